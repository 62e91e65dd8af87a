"""The agent engine on an in-memory transport and a fake clock: download, verify, install, report."""

from __future__ import annotations

import os
import random

import pytest

from otaformat import messages, wire

from .pkgtools import build_package, deliver, frames, job_for


def test_happy_path_installs_and_reports(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key, files={"bin/app": b"v1" * 3000, "etc/conf": b"x=1\n"})
    job = deliver(harness, package, envelope)
    root = harness.config.install_root
    assert os.readlink(os.path.join(root, "demo", "current")) == "1.0.0"
    with open(os.path.join(root, "demo", "current", "bin", "app"), "rb") as f:
        assert f.read() == b"v1" * 3000
    terminal = harness.transport.terminal()
    assert [(s.execution_id, s.state) for s in terminal] == [(job.execution_id, "SUCCEEDED")]
    steps = [s.step for s in harness.transport.statuses() if s.state == "IN_PROGRESS"]
    assert steps == ["DOWNLOADING", "VERIFYING", "INSTALLING"]
    assert harness.agent.store.data["apps"] == {"demo": "1.0.0"}
    with open(os.path.join(harness.config.data_dir, "history.txt")) as f:
        assert f.read().strip().endswith(" demo 1.0.0 SUCCEEDED")
    inventories = [messages.decode(p) for p in harness.transport.leaf("status")]
    assert isinstance(inventories[-1], messages.Inventory) and inventories[-1].apps == {"demo": "1.0.0"}


def test_first_get_asks_for_every_block(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key)
    job = job_for(package, envelope, block_size=256)
    harness.job(job)
    request = wire.decode_request(harness.transport.leaf("get")[0])
    assert request.wanted(job.block_count) == list(range(job.block_count))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_duplicates_and_reordering_change_nothing(harness, publisher, seed):
    key, _ = publisher
    package, envelope = build_package(key, files={"bin/app": random.Random(seed).randbytes(20000)})
    job = job_for(package, envelope, block_size=512)
    harness.job(job)
    fs = frames(job, package)
    shuffled = fs + fs[::3]
    random.Random(seed).shuffle(shuffled)
    for f in shuffled:
        harness.send("blk", f)
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]
    assert harness.agent.store.data["apps"] == {"demo": "1.0.0"}


HEAD = wire.FRAME_HEADER.size


def _corrupt(f: bytes) -> bytes:
    return f[:-1] + bytes([f[-1] ^ 0xFF])


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (lambda job, f: _corrupt(f), "crc"),
        (lambda job, f: wire.encode_frame(job.stream, job.block_count, job.block_count + 1, f[HEAD:]), "range"),
        (lambda job, f: wire.encode_frame((job.stream + 1) % 65536, 0, job.block_count, f[HEAD:]), "stream"),
        (lambda job, f: wire.encode_frame(job.stream, 0, job.block_count, f[HEAD:-1]), "size"),
        (lambda job, f: wire.encode_frame(job.stream, 0, job.block_count, f[HEAD:] + b"x"), "oversized"),
        (lambda job, f: f[:10], "short"),
    ],
)
def test_bad_frames_are_dropped_unwritten(harness, publisher, bad, code):
    key, _ = publisher
    package, envelope = build_package(key)
    job = job_for(package, envelope, block_size=256)
    harness.job(job)
    fs = frames(job, package)
    harness.send("blk", bad(job, fs[0]))
    assert harness.agent.dropped == {code: 1}
    assert harness.agent.spool.count == 0
    for f in fs:
        harness.send("blk", f)
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]


def test_loop_never_spins_while_waiting_for_blocks(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key)
    job = job_for(package, envelope, block_size=256)
    harness.job(job)
    harness.send("blk", frames(job, package)[0])
    harness.idle(0.5)  # ack sent, nothing due for a while
    agent, now = harness.agent, harness.clock()
    assert agent.next_deadline() - now >= 0.4
    harness.transport.connected = False
    harness.idle(5.0)  # offline: no repair request or stall is due, the loop just waits
    assert agent.next_deadline() - harness.clock() >= 0.4
