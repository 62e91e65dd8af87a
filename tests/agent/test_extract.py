"""otaformat.extract: files are written by name under a checked root, never through a link."""

from __future__ import annotations

import os

import pytest

from otaformat.errors import MalformedError, UnsafeArchiveError
from otaformat.extract import checked_root, write_file, write_files


def test_writes_nested_files_with_modes(tmp_path):
    paths = write_files(tmp_path, [("bin/app", 0o100755, b"#!x"), ("etc/a/b.conf", 0o100644, b"k=v")])
    with open(paths[0], "rb") as f:
        assert f.read() == b"#!x"
    assert os.stat(paths[0]).st_mode & 0o777 == 0o755
    assert os.stat(paths[1]).st_mode & 0o777 == 0o644


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../x", "a//b", "./a", "a\x00b", "a\\b", ""])
def test_unsafe_paths_are_refused(tmp_path, path):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises((UnsafeArchiveError, MalformedError)):
        write_file(root, path, b"x")
    assert not (tmp_path / "escape").exists()
    assert list(root.iterdir()) == []


def test_symlinked_directory_in_root_is_not_followed(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "etc").symlink_to(outside)
    with pytest.raises(UnsafeArchiveError):
        write_file(root, "etc/passwd", b"owned")
    assert list(outside.iterdir()) == []


def test_existing_symlink_file_is_not_followed(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    target = tmp_path / "victim"
    target.write_bytes(b"safe")
    (root / "app").symlink_to(target)
    with pytest.raises(UnsafeArchiveError):
        write_file(root, "app", b"owned")
    assert target.read_bytes() == b"safe"


def test_dangling_symlink_is_not_followed(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "app").symlink_to(tmp_path / "created-outside")
    with pytest.raises(UnsafeArchiveError):
        write_file(root, "app", b"owned")
    assert not (tmp_path / "created-outside").exists()


def test_existing_file_is_not_overwritten(tmp_path):
    write_file(tmp_path, "a", b"first")
    with pytest.raises(UnsafeArchiveError):
        write_file(tmp_path, "a", b"second")
    assert (tmp_path / "a").read_bytes() == b"first"


def test_root_reached_through_symlink_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafeArchiveError):
        checked_root(tmp_path / "link")


@pytest.mark.parametrize("mode", [0o120777, 0o020644, 0o060644, 0o040755])
def test_non_regular_modes_are_refused(tmp_path, mode):
    with pytest.raises(UnsafeArchiveError):
        write_files(tmp_path, [("x", mode, b"")])
    assert not (tmp_path / "x").exists()


def test_setuid_bits_are_dropped(tmp_path):
    path = write_file(tmp_path, "x", b"", 0o104755)
    assert os.stat(path).st_mode & 0o7777 == 0o755
