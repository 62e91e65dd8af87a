"""Temp files left by a kill during an atomic write are removed at start; nothing else is."""

from __future__ import annotations

import os
import tempfile

import pytest

from agent.store import TEMP_NAME, new_temp

from .conftest import Harness

# path relative to data_dir ("@root/..." = relative to install_root, "@out/..." = outside both), kind,
# removed at start?
ENTRIES = [
    (".tmp-0a1b2c3d", "file", True),  # state.json's temp
    ("tls/.tmp-k3j_9zzq", "file", True),  # registration's temps (mkstemp names from older agents)
    ("spool/current/.tmp-abcdefgh", "file", True),  # bitmap.bin's temp
    ("base/demo/.tmp-12345678", "file", True),  # a kept base's temp
    ("history.txt", "file", False),
    (".tmp-0a1b2c3", "file", False),  # too short
    (".tmp-0a1b2c3d4", "file", False),  # too long
    (".tmp-ABCDEFGH", "file", False),  # not our alphabet
    ("tmp-0a1b2c3d", "file", False),
    (".tmp-0a1b2c3d.bak", "file", False),
    ("logs/.tmp-0a1b2c3d", "file", False),  # the agent writes no temp files there
    ("base/.tmp-0a1b2c3d", "file", False),
    ("base/demo/sub/.tmp-0a1b2c3d", "file", False),  # one level only
    (".tmp-d1r3ct0r", "dir", False),  # only regular files
    (".tmp-11nk0000", "link", False),  # a link is not followed nor removed
    ("base/linked", "dirlink", False),  # a linked directory is not entered ...
    ("@out/.tmp-0a1b2c3d", "file", False),  # ... so this file, reached through it, stays
    ("@root/demo/.tmp-0a1b2c3d", "file", False),  # not in data_dir
]


def where(h: Harness, tmp_path, rel: str) -> str:
    if rel.startswith("@root/"):
        return os.path.join(h.config.install_root, rel[6:])
    if rel.startswith("@out/"):
        return str(tmp_path / "outside" / rel[5:])
    return os.path.join(h.config.data_dir, rel)


def test_stray_temp_files_are_removed_at_start_and_nothing_else(harness, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for rel, kind, _ in ENTRIES:
        path = where(harness, tmp_path, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind == "file":
            with open(path, "wb") as f:
                f.write(b"x")
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "link":
            os.symlink(str(outside / ".tmp-0a1b2c3d"), path)
        else:
            os.symlink(str(outside), path)
    harness.restart()
    for rel, _, removed in ENTRIES:
        assert os.path.lexists(where(harness, tmp_path, rel)) is not removed, rel
    assert harness.agent.state == "IDLE"


@pytest.mark.parametrize("maker", ["agent", "mkstemp"])
def test_the_agents_temp_names_are_the_ones_removed(tmp_path, maker):
    if maker == "agent":
        fd, path = new_temp(str(tmp_path))
    else:  # what agents before this one left (tempfile.mkstemp with prefix .tmp-)
        fd, path = tempfile.mkstemp(prefix=".tmp-", dir=tmp_path)
    os.close(fd)
    assert TEMP_NAME.fullmatch(os.path.basename(path))
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize("linked", ["tls", "spool/current", "base/demo", "base"])
def test_a_temp_directory_that_is_a_link_is_not_entered(config, tmp_path, linked):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "demo").mkdir()
    for stray in (outside / ".tmp-0a1b2c3d", outside / "demo" / ".tmp-0a1b2c3d"):
        stray.write_bytes(b"not the agent's")
    link = os.path.join(config.data_dir, linked)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(str(outside), link)
    Harness(config)
    assert (outside / ".tmp-0a1b2c3d").exists() and (outside / "demo" / ".tmp-0a1b2c3d").exists()
