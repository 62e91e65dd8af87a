"""Verifying a downloaded package straight from its spool file, in constant memory (issue 12).

`verify_spool` makes the same decision as agent.verify.verify_download on the same bytes, with the same
states, codes and reasons, but never holds the package in memory: it reads the spool in CHUNK-sized
pieces, checks the file's size and SHA-256 against the job (and, in the same pass, the payload's
SHA-256 against the signed manifest), verifies the envelope (at most 1 MiB), then decompresses the
payload under its declared cap while hashing the raw content and every file
(otaformat.streaming.unpack_payload_stream), writing the raw content to `content.bin` beside the
spool. Only when every check passed is that file mapped read-only (mmap) as the `Verified` content,
which the installer writes out file by file: the bytes it installs are the ones just hashed, and they
are re-hashed by Verified.files() before each use. Peak memory: a few CHUNKs plus the decompressor's
window, whatever the package size (the mapped content is page cache, not process heap).

Does not: handle deltas in constant memory. A delta's patch is applied to the base content in memory
(bsdiff needs base and target), so a package whose manifest names a base is verified by reading it
whole and calling verify_download, as before.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from otaformat.canonical import canonical_json
from otaformat.container import CHUNK, HEADER, envelope_length
from otaformat.errors import FormatError, MalformedError, VerificationError
from otaformat.messages import JobDocument
from otaformat.signing import check_policy, parse_envelope, verify_envelope
from otaformat.streaming import unpack_payload_stream

from .verify import Policy, Refusal, Verified, check_job, check_managed, verify_download

CONTENT = "content.bin"


def _chunks(f: object, start: int, end: int) -> Iterator[bytes]:
    """Bytes [start, end) of an open binary file in CHUNK pieces."""
    read = f.read  # type: ignore[attr-defined]
    f.seek(start)  # type: ignore[attr-defined]
    left = end - start
    while left > 0:
        piece = read(min(CHUNK, left))
        if not piece:
            return
        left -= len(piece)
        yield piece


def _is_delta_job(job: JobDocument) -> bool:
    hint = job.envelope.get("manifest")
    return isinstance(hint, dict) and isinstance(hint.get("delta"), dict)


def verify_spool(
    job: JobDocument,
    path: str,
    policy: Policy,
    *,
    now: datetime,
    base_content: Callable[[str, str], bytes | None],
    workdir: str,
) -> Verified:
    """Verify the spooled package at `path`; return the content to install (mapped from
    `workdir`/content.bin) or raise Refusal, exactly as verify_download would decide."""
    if _is_delta_job(job):
        with open(path, "rb") as f:
            data = f.read(job.package_size + 1)
        return verify_download(job, data, policy, now=now, base_content=base_content)
    check_job(job, policy, max(job.package_size, 1))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size != job.package_size:
            raise Refusal("FAILED", f"package file is {size} bytes, job declares {job.package_size}", "length")
        head = f.read(HEADER.size)
        try:
            env_len = envelope_length(head)
            if size < HEADER.size + env_len:
                raise MalformedError("package is truncated inside its envelope")
        except MalformedError as err:
            env_len = -1
            header_error: FormatError | None = VerificationError(err.reason, code="malformed")
        else:
            header_error = None
        start = HEADER.size + env_len if env_len > 0 else size
        whole, payload_digest = hashlib.sha256(), hashlib.sha256()
        offset = 0
        for piece in _chunks(f, 0, size):  # one pass: the file against the job, the payload against the manifest
            whole.update(piece)
            if offset + len(piece) > start:
                payload_digest.update(memoryview(piece)[max(0, start - offset):])
            offset += len(piece)
        if whole.hexdigest() != job.package_sha256:
            raise Refusal("FAILED", "package SHA-256 does not match the job document (corrupted transfer)", "hash")
        return _judge(job, f, size, start, env_len, header_error, payload_digest, policy, now=now, workdir=workdir,
                      base_content=base_content, path=path)


def _judge(job: JobDocument, f: object, size: int, start: int, env_len: int, header_error: FormatError | None,
           payload_digest: Any, policy: Policy, *, now: datetime, workdir: str,
           base_content: Callable[[str, str], bytes | None], path: str) -> Verified:
    """The package checks in otaformat.verdict.judge's order, streaming; Refusal codes as judge_package."""
    app = ""
    try:
        if header_error is not None:
            raise header_error
        raw_envelope = b"".join(_chunks(f, HEADER.size, start))
        verified = verify_envelope(raw_envelope, policy.trusted)
        manifest = verified.manifest
        app = manifest.app
        if manifest.is_delta:  # the job's hint said full, the package says delta: the in-memory path decides
            with open(path, "rb") as whole:
                return verify_download(job, whole.read(size + 1), policy, now=now, base_content=base_content)
        payload_length = size - start
        if payload_length != manifest.payload.length:
            raise VerificationError(f"payload is {payload_length} bytes, manifest declares "
                                    f"{manifest.payload.length}", code="length")
        if payload_digest.hexdigest() != manifest.payload.sha256:
            raise VerificationError("payload SHA-256 does not match the manifest", code="hash")
        content_path = os.path.join(workdir, CONTENT)
        os.makedirs(workdir, mode=0o700, exist_ok=True)
        with open(content_path, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            unpack_payload_stream(manifest, _chunks(f, start, size), out.write)
        check_policy(manifest, now=now, model=policy.model, version_floor=policy.floors.get(app),
                     agent_version=policy.agent_version)
    except FormatError as err:
        raise Refusal("REJECTED", f"{err.code}: {err.reason}", err.code or "rejected") from err
    except (ValueError, OverflowError, MemoryError) as err:
        raise Refusal("REJECTED", f"malformed: package could not be checked: {type(err).__name__}",
                      "malformed") from err
    try:
        same = canonical_json(job.envelope) == canonical_json(parse_envelope(raw_envelope))
    except FormatError:
        same = False
    if not same:
        raise Refusal("REJECTED", "the job document's envelope is not the package's signed envelope", "mismatch")
    check_managed(manifest, policy)
    return Verified(manifest, _map(content_path, manifest.payload.raw_length))


def _map(path: str, length: int) -> bytes:
    """The verified content file, mapped read-only (b"" when empty)."""
    if length == 0:
        return b""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), length, prot=mmap.PROT_READ)  # type: ignore[return-value]
