"""Test helper: build signed packages, job documents and block frames with otaformat directly.

Independent of the packager on purpose. Files are concatenated in the given order; scripts are files
under scripts/<role> with mode 0o100755.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from typing import Any

import zstandard
from cryptography.hazmat.primitives.asymmetric import ec

from otaformat import wire
from otaformat.container import pack_container
from otaformat.manifest import Manifest
from otaformat.messages import JobDocument
from otaformat.signing import encode_envelope, generate_key, public_key_pem, sign_manifest

_streams = itertools.count(100)


def new_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = generate_key()
    return key, public_key_pem(key.public_key())


def build_package(
    key: ec.EllipticCurvePrivateKey,
    *,
    app: str = "demo",
    version: str = "1.0.0",
    models: tuple[str, ...] = ("m1",),
    files: Mapping[str, bytes] | None = None,
    scripts: Mapping[str, str] | None = None,
    kind: str = "app",
    expires: str = "2099-01-01T00:00:00Z",
    delta: Mapping[str, Any] | None = None,
    patch: bytes | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Return (package bytes, envelope dict). With `delta`+`patch`, `files` describe the target."""
    files = dict(files if files is not None else {"bin/app": f"{app} {version}\n".encode() * 50})
    entries = [{"path": p, "mode": 0o100644, "length": len(d), "sha256": hashlib.sha256(d).hexdigest()}
               for p, d in files.items()]
    for role, body in (scripts or {}).items():
        data = body.encode()
        files[f"scripts/{role}"] = data
        entries.append({"path": f"scripts/{role}", "mode": 0o100755, "length": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    content = b"".join(files.values())
    raw = patch if patch is not None else content
    payload = zstandard.ZstdCompressor().compress(raw)
    body = {
        "format": 1, "package_id": f"{app}-{version}", "app": app, "version": version, "kind": kind,
        "models": list(models), "created": "2026-01-01T00:00:00Z", "expires": expires,
        "payload": {"compression": "zstd", "length": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                    "raw_length": len(raw), "raw_sha256": hashlib.sha256(raw).hexdigest()},
        "files": entries, "scripts": {role: f"scripts/{role}" for role in (scripts or {})},
        "min_agent_version": "1.0.0", "delta": dict(delta) if delta else None, "labels": {},
    }
    envelope = sign_manifest(Manifest.from_dict(body), key)
    return pack_container(encode_envelope(envelope), payload), envelope


def job_for(package: bytes, envelope: dict[str, Any], *, epn: str = "dev-1", block_size: int = 1024,
            window: int = 64, execution_id: str | None = None, mode: str = "block", url: str | None = None,
            stream: int | None = None) -> JobDocument:
    stream = next(_streams) if stream is None else stream
    return JobDocument(
        job_id="job-1", execution_id=execution_id or f"exec-{stream}", epn=epn, stream=stream, mode=mode,
        envelope=envelope, package_size=len(package), package_sha256=hashlib.sha256(package).hexdigest(),
        block_size=block_size, block_count=wire.block_count(len(package), block_size), window=window, url=url,
    )


def frames(job: JobDocument, package: bytes) -> list[bytes]:
    bs = job.block_size
    return [wire.encode_frame(job.stream, i, job.block_count, package[i * bs : (i + 1) * bs])
            for i in range(job.block_count)]


def deliver(harness: Any, package: bytes, envelope: dict[str, Any], **job_kw: Any) -> JobDocument:
    """Hand the harness's agent a job document for `package`, then every block of it, in order."""
    job = job_for(package, envelope, **job_kw)
    harness.job(job)
    for frame in frames(job, package):
        harness.send("blk", frame)
    return job
