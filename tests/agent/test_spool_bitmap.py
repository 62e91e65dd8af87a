"""The spool's bitmap is created atomically once, then overwritten in place; any mix of an old and a
new bitmap (a torn overwrite) only claims blocks that are durable."""

from __future__ import annotations

import os

import pytest

from agent.spool import BITMAP, Spool
from otaformat import wire

BS = 256
COUNT = 40


def _spool(directory: str) -> Spool:
    return Spool(directory, package_size=BS * COUNT, block_size=BS, block_count=COUNT, stream=9)


def _write(spool: Spool, indices: range) -> None:
    for i in indices:
        spool.write(wire.decode_frame(wire.encode_frame(9, i, COUNT, bytes([i]) * BS)))


def test_bitmap_is_overwritten_in_place_and_survives_a_restart(tmp_path):
    directory = str(tmp_path / "s")
    spool = _spool(directory)
    _write(spool, range(0, 10))
    spool.flush()
    inode = os.stat(os.path.join(directory, BITMAP)).st_ino
    _write(spool, range(10, 25))
    spool.flush()
    assert os.stat(os.path.join(directory, BITMAP)).st_ino == inode
    spool.close()
    again = _spool(directory)
    assert again.held() == set(range(25))
    assert again.missing() == list(range(25, COUNT))
    again.close()


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 4, 5])
def test_a_torn_bitmap_claims_only_durable_blocks(tmp_path, cut):
    directory = str(tmp_path / "s")
    spool = _spool(directory)
    _write(spool, range(0, 12))
    spool.flush()
    old = bytes(spool.have)
    _write(spool, range(12, COUNT))
    new = bytes(spool.have)
    spool.close()
    torn = new[:cut] + old[cut:]  # what a crash in the middle of the in-place write could leave
    with open(os.path.join(directory, BITMAP), "wb") as f:
        f.write(torn)
    again = _spool(directory)
    assert set(range(12)) <= again.held() <= set(range(COUNT))
    for i in again.held():
        assert again.read_all()[i * BS : (i + 1) * BS] == bytes([i]) * BS
    again.close()
