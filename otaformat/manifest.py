"""The package manifest: a frozen value object, its strict schema and its canonical dict form. No I/O.

The manifest pins everything the package holds: every file and script by path, mode, length and
SHA-256, and the payload by compressed and uncompressed length and hash. A delta manifest describes
the *target* files and adds the base version, base hash, target hash and encoding of the patch.

Payload layout (uncompressed, for full packages): the bytes of every entry of `files`, concatenated in
manifest order. Scripts are files too (under `scripts/`), referenced from `scripts` by path.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import FORMAT_VERSION
from .errors import MalformedError, UnsafeArchiveError
from .ids import check_app, check_model
from .versions import Version

KINDS = ("app", "firmware", "agent", "config")
COMPRESSIONS = ("none", "zstd", "xz")
SCRIPT_ROLES = ("pre-install", "install", "post-install", "rollback")
DELTA_ENCODINGS = ("bsdiff4", "bsdiff4-zstd", "bsdiff4-xz", "zstd-dict", "covers-xz")
MAX_FILES = 10_000
MAX_MODELS = 64
MAX_PATH = 255
MAX_PAYLOAD = 4 << 30  # 4 GiB uncompressed
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PACKAGE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@dataclass(frozen=True)
class FileEntry:
    path: str
    mode: int
    length: int
    sha256: str


@dataclass(frozen=True)
class Payload:
    compression: str
    length: int
    sha256: str
    raw_length: int
    raw_sha256: str


@dataclass(frozen=True)
class Delta:
    base_version: str
    base_sha256: str
    target_sha256: str
    target_length: int
    encoding: str


@dataclass(frozen=True)
class Manifest:
    package_id: str
    app: str
    version: str
    kind: str
    models: tuple[str, ...]
    created: str
    expires: str
    payload: Payload
    files: tuple[FileEntry, ...]
    scripts: tuple[tuple[str, str], ...] = ()  # (role, path) pairs, sorted by role
    min_agent_version: str = "1.0.0"
    delta: Delta | None = None
    format: int = FORMAT_VERSION
    extra: tuple[tuple[str, str], ...] = field(default=())  # free-form string labels

    @property
    def is_delta(self) -> bool:
        return self.delta is not None

    @property
    def version_key(self) -> Version:
        return Version.parse(self.version)

    def script_path(self, role: str) -> str | None:
        return dict(self.scripts).get(role)

    def expires_at(self) -> datetime:
        return parse_timestamp(self.expires)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "package_id": self.package_id,
            "app": self.app,
            "version": self.version,
            "kind": self.kind,
            "models": list(self.models),
            "created": self.created,
            "expires": self.expires,
            "payload": {
                "compression": self.payload.compression,
                "length": self.payload.length,
                "sha256": self.payload.sha256,
                "raw_length": self.payload.raw_length,
                "raw_sha256": self.payload.raw_sha256,
            },
            "files": [
                {"path": f.path, "mode": f.mode, "length": f.length, "sha256": f.sha256} for f in self.files
            ],
            "scripts": dict(self.scripts),
            "min_agent_version": self.min_agent_version,
            "delta": None
            if self.delta is None
            else {
                "base_version": self.delta.base_version,
                "base_sha256": self.delta.base_sha256,
                "target_sha256": self.delta.target_sha256,
                "target_length": self.delta.target_length,
                "encoding": self.delta.encoding,
            },
            "labels": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Validate `data` against the schema; raise MalformedError naming the first bad field."""
        d = _obj(data, "manifest")
        allowed = {
            "format", "package_id", "app", "version", "kind", "models", "created", "expires", "payload",
            "files", "scripts", "min_agent_version", "delta", "labels",
        }
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise MalformedError(f"manifest has unknown field(s): {', '.join(unknown)[:200]}")
        fmt = _int(d, "format", 1, 1)
        if fmt != FORMAT_VERSION:
            raise MalformedError(f"manifest.format {fmt} is not supported (expected {FORMAT_VERSION})")
        kind = _str(d, "kind")
        if kind not in KINDS:
            raise MalformedError(f"manifest.kind {kind[:20]!r} must be one of {', '.join(KINDS)}")
        models_raw = d.get("models")
        if not isinstance(models_raw, list) or not 1 <= len(models_raw) <= MAX_MODELS:
            raise MalformedError(f"manifest.models must be a list of 1..{MAX_MODELS} model numbers")
        models = tuple(check_model(m) for m in models_raw)
        if len(set(models)) != len(models):
            raise MalformedError("manifest.models has duplicates")
        created, expires = _timestamp(d, "created"), _timestamp(d, "expires")
        if parse_timestamp(expires) <= parse_timestamp(created):
            raise MalformedError("manifest.expires must be after manifest.created")
        files = _files(d.get("files"))
        scripts = _scripts(d.get("scripts", {}), {f.path for f in files})
        payload = _payload(_obj(d.get("payload"), "manifest.payload"))
        total = sum(f.length for f in files)
        delta = None if d.get("delta") is None else _delta(_obj(d.get("delta"), "manifest.delta"))
        content_length = delta.target_length if delta else payload.raw_length
        if total != content_length:
            raise MalformedError(
                f"files add up to {total} bytes but the content is declared as {content_length} bytes"
            )
        labels = _obj(d.get("labels", {}), "manifest.labels")
        if len(labels) > 32 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 256 for k, v in labels.items()
        ):
            raise MalformedError("manifest.labels must map at most 32 short strings to strings")
        version = _str(d, "version")
        Version.parse(version)
        min_agent = _str(d, "min_agent_version")
        Version.parse(min_agent)
        package_id = _str(d, "package_id")
        if not _PACKAGE_ID.fullmatch(package_id):
            raise MalformedError("manifest.package_id must match ^[A-Za-z0-9._-]{1,128}$")
        return cls(
            package_id=package_id,
            app=check_app(d.get("app")),
            version=version,
            kind=kind,
            models=models,
            created=created,
            expires=expires,
            payload=payload,
            files=files,
            scripts=scripts,
            min_agent_version=min_agent,
            delta=delta,
            format=fmt,
            extra=tuple(sorted(labels.items())),
        )


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    if not _TIMESTAMP.fullmatch(text):
        raise MalformedError(f"timestamp {text[:40]!r} must look like 2026-01-31T12:00:00Z")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as err:
        raise MalformedError(f"timestamp {text!r} is not a valid date: {err}") from err


def check_relative_path(path: object, where: str = "path") -> str:
    """A safe relative POSIX path: no '..', no absolute path, no empty or odd segments, no NUL/backslash."""
    if not isinstance(path, str) or not 1 <= len(path) <= MAX_PATH:
        raise MalformedError(f"{where} must be a string of 1..{MAX_PATH} characters")
    if path.startswith("/") or "\\" in path or "\x00" in path or any(ord(c) < 32 for c in path):
        raise UnsafeArchiveError(f"{where} {path[:80]!r} is absolute or has forbidden characters")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeArchiveError(f"{where} {path[:80]!r} has an empty, '.' or '..' segment")
    return path


def _obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"{where} must be an object")
    return value


def _str(d: dict[str, Any], key: str, max_len: int = 256) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise MalformedError(f"manifest.{key} must be a non-empty string of at most {max_len} characters")
    return value


def _int(d: dict[str, Any], key: str, low: int, high: int) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MalformedError(f"{key} must be an integer in {low}..{high}")
    return value


def _sha(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise MalformedError(f"{key} must be 64 lowercase hex characters")
    return value


def _timestamp(d: dict[str, Any], key: str) -> str:
    value = _str(d, key, 20)
    parse_timestamp(value)
    return value


def _files(raw: object) -> tuple[FileEntry, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_FILES:
        raise MalformedError(f"manifest.files must be a list of 1..{MAX_FILES} entries")
    entries = []
    seen: set[str] = set()
    for item in raw:
        f = _obj(item, "manifest.files[]")
        path = check_relative_path(f.get("path"), "file path")
        if path in seen:
            raise MalformedError(f"file path {path!r} appears twice")
        seen.add(path)
        mode = _int(f, "mode", 0, 0o177777)
        if not stat.S_ISREG(mode) or mode & (stat.S_ISUID | stat.S_ISGID):
            raise UnsafeArchiveError(
                f"file {path!r} has mode {oct(mode)}: only regular files without setuid/setgid are allowed"
            )
        entries.append(FileEntry(path, mode, _int(f, "length", 0, MAX_PAYLOAD), _sha(f, "sha256")))
    return tuple(entries)


def _scripts(raw: object, paths: set[str]) -> tuple[tuple[str, str], ...]:
    scripts = _obj(raw, "manifest.scripts")
    out = []
    for role, path in scripts.items():
        if role not in SCRIPT_ROLES:
            raise MalformedError(f"script role {role[:30]!r} must be one of {', '.join(SCRIPT_ROLES)}")
        if path not in paths:
            raise MalformedError(f"script {role} points at {str(path)[:80]!r}, which is not in manifest.files")
        out.append((role, path))
    return tuple(sorted(out))


def _payload(p: dict[str, Any]) -> Payload:
    compression = p.get("compression")
    if compression not in COMPRESSIONS:
        raise MalformedError(f"payload.compression must be one of {', '.join(COMPRESSIONS)}")
    return Payload(
        compression=compression,
        length=_int(p, "length", 0, MAX_PAYLOAD),
        sha256=_sha(p, "sha256"),
        raw_length=_int(p, "raw_length", 0, MAX_PAYLOAD),
        raw_sha256=_sha(p, "raw_sha256"),
    )


def _delta(p: dict[str, Any]) -> Delta:
    encoding = p.get("encoding")
    if encoding not in DELTA_ENCODINGS:
        raise MalformedError(f"delta.encoding must be one of {', '.join(DELTA_ENCODINGS)}")
    base_version = p.get("base_version")
    Version.parse(base_version)
    return Delta(
        base_version=str(base_version),
        base_sha256=_sha(p, "base_sha256"),
        target_sha256=_sha(p, "target_sha256"),
        target_length=_int(p, "target_length", 0, MAX_PAYLOAD),
        encoding=encoding,
    )
