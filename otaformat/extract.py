"""Safe writing of verified files under a checked root directory (THREATS 12, 13).

Every file is created by name, relative to a directory file descriptor, with
O_CREAT|O_EXCL|O_NOFOLLOW, and every intermediate directory is opened with O_NOFOLLOW|O_DIRECTORY,
so no symbolic link is ever followed (neither one planted in the root nor one racing in) and no
existing file is overwritten. Paths are checked with `check_relative_path` first ('..', absolute,
NUL and empty segments are refused); modes keep only permission bits (no setuid/setgid/sticky).

This module does not verify anything: callers hand in bytes that already passed
`otaformat.container.verify_package` (or the delta check). It never calls `extractall` and never
deletes anything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable

from .errors import UnsafeArchiveError
from .manifest import check_relative_path

PERMISSION_BITS = 0o777
DIR_MODE = 0o755
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def checked_root(root: str | os.PathLike[str]) -> str:
    """Absolute path of an existing real directory that is not reached through a symbolic link."""
    path = os.path.abspath(os.fspath(root))
    real = os.path.realpath(path)
    if real != path:
        raise UnsafeArchiveError(f"install root {path!r} goes through a symbolic link (resolves to {real!r})")
    if not os.path.isdir(real):
        raise UnsafeArchiveError(f"install root {path!r} is not a directory")
    return real


def _open_dir(name: str, dir_fd: int, *, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise UnsafeArchiveError(f"{name!r} exists and is not a plain directory (symbolic link?)") from err
        raise
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, DIR_MODE, dir_fd=dir_fd)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as err:
        raise UnsafeArchiveError(f"{name!r} is not a plain directory (symbolic link?)") from err


def write_file(root: str | os.PathLike[str], path: str, data: bytes | memoryview, mode: int = 0o644) -> str:
    """Create `root/path` holding `data` with permission bits of `mode`; return the absolute path.

    Raises UnsafeArchiveError for an unsafe path, an existing file, or a symbolic link anywhere on the way.
    """
    base = checked_root(root)
    rel = check_relative_path(path, "file path")
    parts = rel.split("/")
    fd = os.open(base, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            child = _open_dir(part, fd, create=True)
            os.close(fd)
            fd = child
        try:
            out = os.open(parts[-1], _FILE_FLAGS, 0o600, dir_fd=fd)
        except FileExistsError as err:
            raise UnsafeArchiveError(f"{rel!r} already exists under the root; refusing to overwrite") from err
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.EISDIR):
                raise UnsafeArchiveError(f"{rel!r} is a symbolic link or directory under the root") from err
            raise
        try:
            view = memoryview(data)
            written = 0
            while written < len(view):
                written += os.write(out, view[written : written + (1 << 20)])
            os.fchmod(out, mode & PERMISSION_BITS)
            os.fsync(out)
        finally:
            os.close(out)
        os.fsync(fd)
    finally:
        os.close(fd)
    full = os.path.join(base, *parts)
    if os.path.commonpath([os.path.realpath(full), base]) != base:  # belt and braces
        raise UnsafeArchiveError(f"{rel!r} resolved outside the root")
    return full


def write_files(root: str | os.PathLike[str], files: Iterable[tuple[str, int, bytes | memoryview]]) -> list[str]:
    """Write (path, mode, data) triples under `root` with `write_file`; all paths are checked first."""
    items = list(files)
    for path, mode, _ in items:
        check_relative_path(path, "file path")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise UnsafeArchiveError(f"file {path!r} has mode {oct(mode)}: only regular files can be written")
    return [write_file(root, path, data, mode) for path, mode, data in items]
