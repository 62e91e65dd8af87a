"""The one-file package container, and the pure checks that turn its bytes into trusted content.

Layout (all integers big-endian):

    0   8 bytes   magic b"OTAPKG\\x00\\x01"
    8   4 bytes   N, length of the envelope (1 .. 1 MiB)
    12  N bytes   envelope: canonical JSON {"manifest": {...}, "signatures": [...]}
    12+N          payload: exactly manifest.payload.length bytes, then end of file

Nothing here does I/O: callers hand in bytes. Nothing is trusted before `verify_envelope` succeeds,
and every size is bounded before anything is allocated: the envelope length before the envelope is
parsed, and the uncompressed size by the manifest, counted while decompressing (THREATS 4, 14).
"""

from __future__ import annotations

import hashlib
import lzma
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import zstandard
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import MalformedError, UnsafeArchiveError, VerificationError
from .manifest import FileEntry, Manifest
from .signing import MAX_ENVELOPE_BYTES, VerifiedManifest, verify_envelope

MAGIC = b"OTAPKG\x00\x01"
HEADER = struct.Struct(">8sI")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Container:
    """The two parts of a package file, not yet trusted."""

    envelope: bytes
    payload: bytes


def pack_container(envelope: bytes, payload: bytes) -> bytes:
    if not 0 < len(envelope) <= MAX_ENVELOPE_BYTES:
        raise MalformedError(f"envelope must be 1..{MAX_ENVELOPE_BYTES} bytes")
    return HEADER.pack(MAGIC, len(envelope)) + envelope + payload


def envelope_length(head: bytes) -> int:
    """Read the envelope length from the first 12 bytes, checking magic and bounds."""
    if len(head) < HEADER.size:
        raise MalformedError(f"package is shorter than its {HEADER.size}-byte header")
    magic, length = HEADER.unpack_from(head)
    if magic != MAGIC:
        raise MalformedError("not an OTA package (bad magic)")
    if not 0 < length <= MAX_ENVELOPE_BYTES:
        raise MalformedError(f"envelope length {length} is outside 1..{MAX_ENVELOPE_BYTES}")
    return length


def split_container(data: bytes) -> Container:
    length = envelope_length(data[: HEADER.size])
    if len(data) < HEADER.size + length:
        raise MalformedError("package is truncated inside its envelope")
    start = HEADER.size + length
    return Container(envelope=bytes(data[HEADER.size : start]), payload=bytes(data[start:]))


def check_payload(manifest: Manifest, payload: bytes) -> None:
    """Compressed payload: exact declared length and SHA-256."""
    if len(payload) != manifest.payload.length:
        raise VerificationError(
            f"payload is {len(payload)} bytes, manifest declares {manifest.payload.length}", code="length"
        )
    digest = hashlib.sha256(payload).hexdigest()
    if digest != manifest.payload.sha256:
        raise VerificationError("payload SHA-256 does not match the manifest", code="hash")


def decompress(compression: str, data: bytes, limit: int) -> bytes:
    """Decompress, refusing to produce more than `limit` bytes (aborts at limit + 1)."""
    if compression == "none":
        out = data
    elif compression == "zstd":
        try:
            out = bounded_zstd(data, limit)
        except zstandard.ZstdError as err:
            raise VerificationError(f"payload is not valid zstd: {err}", code="compression") from err
    elif compression == "xz":
        out = _bounded_xz(data, limit)
    else:
        raise MalformedError(f"unknown compression {compression!r}")
    if len(out) > limit:
        raise UnsafeArchiveError(f"payload expands beyond its declared {limit} bytes", code="bomb")
    return out


def bounded_zstd(data: bytes, limit: int, *, dict_data: zstandard.ZstdCompressionDict | None = None,
                 max_window_size: int = 0) -> bytes:
    """zstd-decompress, producing at most `limit` bytes (UnsafeArchiveError at limit + 1).

    zstandard.ZstdError propagates: callers name what was malformed. Also used by otaformat.delta.
    """
    decomp = zstandard.ZstdDecompressor(dict_data=dict_data, max_window_size=max_window_size)
    reader = decomp.stream_reader(data, read_across_frames=True)
    out = bytearray()
    while True:
        chunk = reader.read(min(CHUNK, limit + 1 - len(out)) or 1)
        if not chunk:
            break
        out += chunk
        if len(out) > limit:
            raise UnsafeArchiveError(f"zstd data expands beyond its declared {limit} bytes", code="bomb")
    return bytes(out)


def _bounded_xz(data: bytes, limit: int) -> bytes:
    decomp = lzma.LZMADecompressor()
    try:
        out = decomp.decompress(data, max_length=limit + 1)
    except lzma.LZMAError as err:
        raise VerificationError(f"payload is not valid xz: {err}", code="compression") from err
    if len(out) > limit:
        raise UnsafeArchiveError(f"payload expands beyond its declared {limit} bytes", code="bomb")
    if not decomp.eof:
        raise VerificationError("xz payload is truncated", code="compression")
    return out


def unpack_payload(manifest: Manifest, payload: bytes) -> bytes:
    """Check the compressed payload, decompress it under the declared cap, check the raw hash."""
    check_payload(manifest, payload)
    raw = decompress(manifest.payload.compression, payload, manifest.payload.raw_length)
    if len(raw) != manifest.payload.raw_length:
        raise VerificationError(
            f"payload decompresses to {len(raw)} bytes, manifest declares {manifest.payload.raw_length}",
            code="length",
        )
    if hashlib.sha256(raw).hexdigest() != manifest.payload.raw_sha256:
        raise VerificationError("uncompressed payload SHA-256 does not match the manifest", code="hash")
    return raw


def iter_files(manifest: Manifest, content: bytes) -> Iterator[tuple[FileEntry, memoryview]]:
    """Split full content into the manifest's files, checking every length and SHA-256 first."""
    view = memoryview(content)
    offset = 0
    for entry in manifest.files:
        piece = view[offset : offset + entry.length]
        if len(piece) != entry.length:
            raise VerificationError(f"content ends inside {entry.path}", code="length")
        if hashlib.sha256(piece).hexdigest() != entry.sha256:
            raise VerificationError(f"file {entry.path} SHA-256 does not match the manifest", code="hash")
        offset += entry.length
    if offset != len(content):
        raise VerificationError("content is longer than its files", code="length")
    offset = 0
    for entry in manifest.files:
        yield entry, view[offset : offset + entry.length]
        offset += entry.length


def check_content(manifest: Manifest, content: bytes) -> None:
    """Full content (raw payload of a full package, or a delta's result) against every pinned hash."""
    target_sha = manifest.delta.target_sha256 if manifest.delta else manifest.payload.raw_sha256
    if hashlib.sha256(content).hexdigest() != target_sha:
        raise VerificationError("content SHA-256 does not match the manifest", code="hash")
    for _ in iter_files(manifest, content):
        pass


@dataclass(frozen=True)
class VerifiedPackage:
    """A package whose signature, payload hash, sizes and file hashes all checked out.

    For a full package `content` is the concatenated files; for a delta it is the raw patch, which
    must be applied to the base (`otaformat.delta.apply_verified_delta`) before installing.
    """

    verified: VerifiedManifest
    content: bytes

    @property
    def manifest(self) -> Manifest:
        return self.verified.manifest


def verify_package(data: bytes, trusted: Mapping[str, ec.EllipticCurvePublicKey]) -> VerifiedPackage:
    """Pure end-to-end check of package bytes: envelope signature, schema, payload, content hashes."""
    try:
        container = split_container(data)
    except MalformedError as err:
        raise VerificationError(err.reason, code="malformed") from err
    verified = verify_envelope(container.envelope, trusted)
    raw = unpack_payload(verified.manifest, container.payload)
    if not verified.manifest.is_delta:
        check_content(verified.manifest, raw)
    return VerifiedPackage(verified=verified, content=raw)
