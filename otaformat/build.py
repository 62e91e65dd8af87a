"""Pure package builder: files in, deterministic signed package bytes out. No I/O, no clock.

Used by the packager (`ota-pack build` / `delta`), the fixture generator and tests. The same inputs give
byte-identical packages: files are sorted by path, modes normalised to 0o100644 / 0o100755,
compression runs single-threaded with fixed parameters, and the ECDSA signature is deterministic
(RFC 6979, `cryptography` >= 44). Not here: reading directories or key files, choosing the clock.
"""

from __future__ import annotations

import base64
import hashlib
import lzma
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from . import FORMAT_VERSION
from .canonical import canonical_json
from .container import VerifiedPackage, pack_container
from .delta import make_delta
from .errors import MalformedError
from .manifest import DELTA_ENCODINGS, MAX_PAYLOAD, SCRIPT_ROLES, Manifest
from .signing import ALGORITHM, encode_envelope, key_id

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
ZSTD_LEVEL = 19
XZ_PRESET = 9 | lzma.PRESET_EXTREME
SCRIPT_DIR = "scripts"


@dataclass(frozen=True)
class SourceFile:
    """One file to package: its path inside the package, its bytes and whether it is executable."""

    path: str
    data: bytes = field(repr=False)
    executable: bool = False


@dataclass(frozen=True)
class BuildSpec:
    """Everything about a full package except its files."""

    app: str
    version: str
    models: tuple[str, ...]
    created: str
    expires: str
    kind: str = "app"
    compression: str = "zstd"
    min_agent_version: str = "1.0.0"
    scripts: tuple[tuple[str, bytes], ...] = ()  # (role, script bytes)
    labels: tuple[tuple[str, str], ...] = ()


def compress(compression: str, data: bytes) -> bytes:
    """Deterministic compression with the package format's fixed parameters."""
    if compression == "none":
        return bytes(data)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False, threads=0).compress(data)
    if compression == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET)
    raise MalformedError(f"compression {compression[:20]!r} must be one of none, zstd, xz")


def sign_body(body: Mapping[str, Any], key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """Sign canonical_json(body) deterministically; return the envelope dict. Does not validate `body`.

    The fixture generator uses this directly to sign deliberately hostile manifests.
    """
    signature = key.sign(canonical_json(dict(body)), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return {
        "manifest": dict(body),
        "signatures": [
            {"alg": ALGORITHM, "keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}
        ],
    }


def seal(body: Mapping[str, Any], payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Container bytes for a signed manifest dict and its (compressed) payload."""
    return pack_container(encode_envelope(sign_body(body, key)), payload)


def payload_fields(compression: str, raw: bytes, payload: bytes) -> dict[str, Any]:
    return {
        "compression": compression,
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "raw_length": len(raw),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
    }


def file_entries(files: Sequence[SourceFile]) -> tuple[list[dict[str, Any]], bytes]:
    """Sort by path, normalise modes; return manifest file entries and the concatenated content."""
    ordered = sorted(files, key=lambda f: f.path)
    paths = [f.path for f in ordered]
    dupes = sorted({p for p in paths if paths.count(p) > 1})
    if dupes:
        raise MalformedError(f"file path {dupes[0]!r} appears twice")
    entries = [
        {
            "path": f.path,
            "mode": MODE_EXEC if f.executable else MODE_FILE,
            "length": len(f.data),
            "sha256": hashlib.sha256(f.data).hexdigest(),
        }
        for f in ordered
    ]
    content = b"".join(f.data for f in ordered)
    if len(content) > MAX_PAYLOAD:
        raise MalformedError(f"content of {len(content)} bytes exceeds the limit of {MAX_PAYLOAD}")
    return entries, content


def full_body(spec: BuildSpec, files: Sequence[SourceFile]) -> tuple[dict[str, Any], bytes]:
    """The manifest dict (validated) and the compressed payload of a full package."""
    scripts: dict[str, str] = {}
    all_files = list(files)
    for role, data in spec.scripts:
        if role not in SCRIPT_ROLES:
            raise MalformedError(f"script role {role!r} must be one of {', '.join(SCRIPT_ROLES)}")
        path = f"{SCRIPT_DIR}/{role}"
        if any(f.path == path for f in files):
            raise MalformedError(f"{path} is both a data file and the {role} script")
        scripts[role] = path
        all_files.append(SourceFile(path, data, executable=True))
    entries, content = file_entries(all_files)
    payload = compress(spec.compression, content)
    body = {
        "format": FORMAT_VERSION,
        "package_id": f"{spec.app}-{spec.version}",
        "app": spec.app,
        "version": spec.version,
        "kind": spec.kind,
        "models": list(spec.models),
        "created": spec.created,
        "expires": spec.expires,
        "payload": payload_fields(spec.compression, content, payload),
        "files": entries,
        "scripts": dict(sorted(scripts.items())),
        "min_agent_version": spec.min_agent_version,
        "delta": None,
        "labels": dict(spec.labels),
    }
    Manifest.from_dict(body)  # the builder refuses what a verifier would refuse
    return body, payload


def build_full(spec: BuildSpec, files: Sequence[SourceFile], key: ec.EllipticCurvePrivateKey) -> bytes:
    body, payload = full_body(spec, files)
    return seal(body, payload, key)


def delta_body(
    base: VerifiedPackage,
    target: VerifiedPackage,
    *,
    created: str,
    expires: str | None = None,
    encodings: tuple[str, ...] | None = None,
    compression: str = "none",
    differ: Callable[[bytes, bytes, tuple[str, ...] | None], tuple[str, bytes]] = make_delta,
) -> tuple[dict[str, Any], bytes]:
    """Manifest dict and payload of a delta from `base` to `target` (both verified full packages).

    Every input is validated before the diff (which can take minutes): a manifest that would be refused
    (an expiry before `created`, an unknown encoding or compression) fails at once, not after the work.
    """
    old, new = base.manifest, target.manifest
    if old.is_delta or new.is_delta:
        raise MalformedError("both --from and --to must be full packages, not deltas")
    if old.app != new.app:
        raise MalformedError(f"packages are for different apps: {old.app} and {new.app}")
    if old.version == new.version:
        raise MalformedError(f"both packages have version {new.version}")
    unknown = [e for e in encodings or () if e not in DELTA_ENCODINGS]
    if unknown:
        raise MalformedError(f"unknown delta encoding {unknown[0]!r}; known: {', '.join(DELTA_ENCODINGS)}")
    chosen = (encodings or DELTA_ENCODINGS)[0]
    Manifest.from_dict(_delta_manifest(old, new, created, expires, chosen,
                                       payload_fields(compression, b"", compress(compression, b""))))
    encoding, patch = differ(base.content, target.content, encodings)
    payload = compress(compression, patch)
    body = _delta_manifest(old, new, created, expires, encoding, payload_fields(compression, patch, payload))
    Manifest.from_dict(body)
    return body, payload


def _delta_manifest(
    old: Manifest, new: Manifest, created: str, expires: str | None, encoding: str, payload: dict[str, Any]
) -> dict[str, Any]:
    body = new.to_dict()
    body.update(
        package_id=f"{new.app}-{old.version}-to-{new.version}",
        created=created,
        expires=expires or new.expires,
        payload=payload,
        delta={
            "base_version": old.version,
            "base_sha256": old.payload.raw_sha256,
            "target_sha256": new.payload.raw_sha256,
            "target_length": new.payload.raw_length,
            "encoding": encoding,
        },
    )
    return body


def build_delta(
    base: VerifiedPackage, target: VerifiedPackage, key: ec.EllipticCurvePrivateKey, **kwargs: Any
) -> bytes:
    body, payload = delta_body(base, target, **kwargs)
    return seal(body, payload, key)
