"""Streaming counterparts of container.unpack_payload / check_content, for packages larger than memory.

`unpack_payload_stream` takes the compressed payload as an iterable of chunks (whose length and
SHA-256 the caller has ALREADY checked, container.check_payload's job, so the order of checks and the
error codes stay those of container.verify_package), decompresses it under the manifest's raw_length
cap (aborting at raw_length + 1 bytes, THREATS 14), hands every raw chunk to `sink` as it is produced,
and checks the raw length, the raw SHA-256 and every file's length and SHA-256 at the end, raising the
same VerificationError / UnsafeArchiveError codes and reasons as container.unpack_payload and
container.iter_files. Memory is bounded by the chunk size plus the decompressor's window (zstd: at
most zstandard's default limit of 128 MiB for hostile frames; xz: the stream's dictionary, as with
container.decompress), never by the package.

`judge_buffer` is otaformat.verdict.judge (same order, same codes, no delta applied) over a buffer
that must not be copied, e.g. the cloud scan's read-only mmap of the spooled staging object.

Does no I/O of its own (judge_buffer writes to the file its caller hands it) and decides nothing about
trust in unpack_payload_stream: `sink` receives bytes that are NOT verified until it returns. Applying
a delta stays in memory (otaformat.delta: bsdiff needs base and target), so a device verifying a delta
uses the in-memory path; a delta's patch itself streams here (check_files=False).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import mmap
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import zstandard
from cryptography.hazmat.primitives.asymmetric import ec

from .container import CHUNK, HEADER, envelope_length
from .errors import FormatError, MalformedError, UnsafeArchiveError, VerificationError
from .manifest import Manifest
from .signing import check_policy, verify_envelope
from .verdict import Verdict


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterable of chunks (what zstandard's stream_reader needs)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = bytes(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _raw_chunks(compression: str, chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Decompressed chunks; raises at limit + 1 bytes (bomb) or on malformed data (compression)."""
    if compression == "none":
        yield from chunks
    elif compression == "zstd":
        source: Any = _ChunkReader(chunks)  # a file-like object: zstandard reads it with read()
        reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        produced = 0
        while True:
            try:
                chunk = reader.read(min(CHUNK, limit + 1 - produced) or 1)
            except zstandard.ZstdError as err:
                raise VerificationError(f"payload is not valid zstd: {err}", code="compression") from err
            if not chunk:
                return
            produced += len(chunk)
            if produced > limit:
                raise UnsafeArchiveError(f"zstd data expands beyond its declared {limit} bytes", code="bomb")
            yield chunk
    elif compression == "xz":
        decomp = lzma.LZMADecompressor()
        for chunk in chunks:
            data = chunk
            while not decomp.eof:
                try:
                    out = decomp.decompress(data, max_length=CHUNK)
                except lzma.LZMAError as err:
                    raise VerificationError(f"payload is not valid xz: {err}", code="compression") from err
                data = b""
                if out:
                    yield out
                if decomp.needs_input:
                    break
            if decomp.eof:
                break
        if not decomp.eof:
            raise VerificationError("xz payload is truncated", code="compression")
    else:
        raise MalformedError(f"unknown compression {compression!r}")


def unpack_payload_stream(manifest: Manifest, payload_chunks: Iterable[bytes], sink: Callable[[bytes], None],
                          *, check_files: bool = True) -> None:
    """Decompress a (length- and hash-checked) payload chunk by chunk into `sink`, then check the raw
    length, raw SHA-256 and (check_files, for a full package: a delta's raw payload is its patch) every
    file against the manifest."""
    limit = manifest.payload.raw_length
    raw_digest = hashlib.sha256()
    files = list(manifest.files) if check_files else []
    digests: list[str | None] = [None] * len(files)
    index, left = 0, files[0].length if files else 0
    current = hashlib.sha256()
    total = 0
    for chunk in _raw_chunks(manifest.payload.compression, payload_chunks, limit):
        total += len(chunk)
        if total > limit:
            raise UnsafeArchiveError(f"payload expands beyond its declared {limit} bytes", code="bomb")
        raw_digest.update(chunk)
        sink(chunk)
        view = memoryview(chunk)
        while index < len(files):
            if left == 0:  # a file is complete (or empty): record it, move on
                digests[index] = current.hexdigest()
                index += 1
                current = hashlib.sha256()
                left = files[index].length if index < len(files) else 0
                continue
            if not view:
                break
            take = min(left, len(view))
            current.update(view[:take])
            view, left = view[take:], left - take
    while index < len(files) and left == 0:  # trailing complete (or empty) files
        digests[index] = current.hexdigest()
        index += 1
        current = hashlib.sha256()
        left = files[index].length if index < len(files) else 0
    if total != limit:
        raise VerificationError(f"payload decompresses to {total} bytes, manifest declares {limit}", code="length")
    if raw_digest.hexdigest() != manifest.payload.raw_sha256:
        raise VerificationError("uncompressed payload SHA-256 does not match the manifest", code="hash")
    covered = 0
    for entry, digest in zip(files, digests, strict=True):
        if digest is None:
            raise VerificationError(f"content ends inside {entry.path}", code="length")
        if digest != entry.sha256:
            raise VerificationError(f"file {entry.path} SHA-256 does not match the manifest", code="hash")
        covered += entry.length
    if check_files and covered != total:
        raise VerificationError("content is longer than its files", code="length")


def _slices(view: memoryview, start: int, end: int) -> Iterator[bytes]:
    for offset in range(start, end, CHUNK):
        yield view[offset : min(offset + CHUNK, end)]  # type: ignore[misc]


def judge_buffer(
    data: Any,
    trusted: Mapping[str, ec.EllipticCurvePublicKey],
    *,
    now: datetime,
    model: str | None = None,
    content_file: Callable[[], Any] | None = None,
) -> Verdict:
    """otaformat.verdict.judge for a package held in a buffer that should not be copied (e.g. a
    read-only mmap of a spooled file): the same checks in the same order with the same codes, reading
    the buffer in CHUNK slices. No delta is applied (no base). The verdict's `content` is a zero-copy
    view of the payload for compression "none", else the raw payload decompressed into the binary
    file `content_file()` returns (an open, writable, unlinked temporary file) and mapped read-only;
    None when `content_file` is None and a copy would be needed."""
    view = memoryview(data).cast("B")
    manifest: Manifest | None = None
    try:
        try:
            env_len = envelope_length(bytes(view[: HEADER.size]))
            if len(view) < HEADER.size + env_len:
                raise MalformedError("package is truncated inside its envelope")
        except MalformedError as err:
            raise VerificationError(err.reason, code="malformed") from err
        start = HEADER.size + env_len
        verified = verify_envelope(bytes(view[HEADER.size : start]), trusted)
        signed = verified.manifest  # becomes the verdict's manifest once the package checks passed, as in judge
        payload = view[start:]
        if len(payload) != signed.payload.length:
            raise VerificationError(f"payload is {len(payload)} bytes, manifest declares {signed.payload.length}",
                                    code="length")
        if hashlib.sha256(payload).hexdigest() != signed.payload.sha256:
            raise VerificationError("payload SHA-256 does not match the manifest", code="hash")
        out = content_file() if content_file is not None and signed.payload.compression != "none" else None
        sink: Callable[[bytes], Any] = out.write if out is not None else (lambda chunk: None)
        unpack_payload_stream(signed, _slices(view, start, len(view)), sink, check_files=not signed.is_delta)
        manifest = signed
        check_policy(manifest, now=now, model=model)
        content: Any = payload if signed.payload.compression == "none" else None
        if out is not None:
            out.flush()
            content = (mmap.mmap(out.fileno(), signed.payload.raw_length, prot=mmap.PROT_READ)
                       if signed.payload.raw_length else b"")
    except FormatError as err:
        return Verdict(False, err.code, err.reason, manifest)
    except (ValueError, OverflowError, MemoryError) as err:  # fail closed on anything unforeseen
        return Verdict(False, "malformed", f"package could not be checked: {type(err).__name__}", manifest)
    return Verdict(True, None, None, manifest, verified.key_id, content)
