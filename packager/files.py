"""File-system side of `ota-pack`: read sources, keys and packages with bounds; write atomically.

Every failure is an `InputError` with one sentence naming the file, so the CLI can print it and exit 2.
Private keys are written with mode 0600 and never echoed. Not here: anything about the format itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from otaformat.build import SourceFile
from otaformat.container import HEADER
from otaformat.errors import FormatError
from otaformat.manifest import MAX_FILES, MAX_PAYLOAD, check_relative_path
from otaformat.signing import MAX_ENVELOPE_BYTES, key_id, load_private_key, private_key_pem, public_key_pem

MAX_PACKAGE_BYTES = HEADER.size + MAX_ENVELOPE_BYTES + MAX_PAYLOAD
MAX_KEY_BYTES = 64 << 10
MAX_SCRIPT_BYTES = 16 << 20


class InputError(Exception):
    """A file or argument the user gave cannot be used; the message is one line."""


def read_bounded(path: str | Path, limit: int, what: str) -> bytes:
    """Read a regular file of at most `limit` bytes (size checked before reading)."""
    p = Path(path)
    try:
        info = p.stat()
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} {p} is not a regular file")
        if info.st_size > limit:
            raise InputError(f"{what} {p} is {info.st_size} bytes, the limit is {limit}")
        with p.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise InputError(f"cannot read {what} {p}: {err.strerror or err}") from err
    if len(data) > limit:
        raise InputError(f"{what} {p} grew beyond {limit} bytes while reading")
    return data


def read_package(path: str | Path) -> bytes:
    return read_bounded(path, MAX_PACKAGE_BYTES, "package")


def read_private_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    try:
        return load_private_key(read_bounded(path, MAX_KEY_BYTES, "private key"))
    except FormatError as err:
        raise InputError(f"private key {path}: {err.reason}") from err


def read_public_pem(path: str | Path) -> bytes:
    return read_bounded(path, MAX_KEY_BYTES, "public key")


def read_tree(root: str | Path) -> list[SourceFile]:
    """Every regular file under `root` by relative POSIX path; symlinks and special files are refused."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"source {base} is not a directory")
    out: list[SourceFile] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(base).as_posix()
            info = full.lstat()
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"source {rel} is a symlink or special file; only regular files can be packaged")
            try:
                check_relative_path(rel, "source path")
            except FormatError as err:
                raise InputError(err.reason) from err
            total += info.st_size
            if total > MAX_PAYLOAD or len(out) >= MAX_FILES:
                raise InputError(f"source {base} exceeds {MAX_FILES} files or {MAX_PAYLOAD} bytes")
            data = read_bounded(full, MAX_PAYLOAD, "source file")
            out.append(SourceFile(rel, data, executable=bool(info.st_mode & 0o111)))
    if not out:
        raise InputError(f"source {base} holds no files")
    return out


def write_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temp file in the same directory, fsync, rename."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {target}: {err.strerror or err}") from err


def write_keypair(directory: str | Path, name: str, key: ec.EllipticCurvePrivateKey, force: bool = False) -> str:
    """Write `<name>.key` (0600, PKCS#8 PEM) and `<name>.pub` (PEM); return the key id."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {folder}: {err.strerror or err}") from err
    priv, pub = folder / f"{name}.key", folder / f"{name}.pub"
    for existing in (priv, pub):
        if existing.exists() and not force:
            raise InputError(f"{existing} already exists (use --force to replace it)")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(priv, flags, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key))
    except OSError as err:
        raise InputError(f"cannot write {priv}: {err.strerror or err}") from err
    write_atomic(pub, public_key_pem(key.public_key()))
    return key_id(key.public_key())
