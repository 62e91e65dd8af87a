"""Wire protocol v1 codecs: binary block frames, selective acks, repair requests, bitmaps. No I/O.

Block frame (big-endian), 13-byte header then the block bytes:

    0  u8   protocol version (1)
    1  u16  stream id: the execution's 16-bit transfer id from the job document
    3  u24  block index (0-based)
    6  u24  total number of blocks
    9  u32  CRC-32 (zlib/IEEE) of bytes 0..8 followed by the block bytes
    13 ...  block bytes (block_size, except the last block)

The header is kept this small so that a 4 KB block costs under 1% in header and MQTT framing.

Acks and repair requests are small JSON objects (see docs/protocol.md):

    ack: {"x": exec_id, "s": stream, "n": contiguous, "b": base64 bitmap after n, "g": group stream}
    get: {"x": exec_id, "s": stream, "o": offset, "b": base64 bitmap of wanted blocks from o, "g": ...}

`g` (optional) is the group stream of section 15 of the protocol: present while the device follows the
job's group topic, absent otherwise (and from agents without group delivery).

Bitmaps are LSB-first: bit k of byte j stands for block base + 8*j + k.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .canonical import canonical_json, parse_json
from .errors import MalformedError

PROTOCOL_VERSION = 1
FRAME_HEADER = struct.Struct(">BH3s3sI")
MIN_BLOCK_SIZE = 256
MAX_BLOCK_SIZE = 120 * 1024
MAX_BLOCKS = (1 << 24) - 1  # index and total are u24
MAX_STREAM = 0xFFFF
MAX_BITMAP_BYTES = 8192  # one ack or request covers at most 65536 blocks
MAX_CONTROL_MESSAGE = 16384
# Nesting limit of every device-to-cloud JSON message (ack, get, status, inventory, url): they are flat
# objects (an inventory's "apps" is the one nested object). Checked before parsing (boundedjson).
MAX_DEVICE_JSON_DEPTH = 4


@dataclass(frozen=True)
class BlockFrame:
    stream: int
    index: int
    total: int
    data: bytes


def new_stream() -> int:
    """A random stream id for a new execution (or a retry of one)."""
    return secrets.randbelow(MAX_STREAM + 1)


def encode_frame(stream: int, index: int, total: int, data: bytes) -> bytes:
    head = struct.pack(">BH", PROTOCOL_VERSION, stream) + index.to_bytes(3, "big") + total.to_bytes(3, "big")
    crc = zlib.crc32(data, zlib.crc32(head)) & 0xFFFFFFFF
    return head + struct.pack(">I", crc) + data


def decode_frame(message: bytes, *, max_block: int = MAX_BLOCK_SIZE) -> BlockFrame:
    """Decode and check a frame: length, version, CRC, index < total. Raises MalformedError."""
    if len(message) > FRAME_HEADER.size + max_block:
        raise MalformedError(f"frame of {len(message)} bytes exceeds the limit", code="oversized")
    if len(message) < FRAME_HEADER.size + 1:
        raise MalformedError("frame shorter than its header plus one byte", code="short")
    version, stream, raw_index, raw_total, crc = FRAME_HEADER.unpack_from(message)
    if version != PROTOCOL_VERSION:
        raise MalformedError(f"frame version {version} is not supported", code="version")
    index, total = int.from_bytes(raw_index, "big"), int.from_bytes(raw_total, "big")
    data = bytes(message[FRAME_HEADER.size :])
    expected = zlib.crc32(data, zlib.crc32(message[: FRAME_HEADER.size - 4])) & 0xFFFFFFFF
    if crc != expected:
        raise MalformedError("frame CRC mismatch", code="crc")
    if total == 0 or total > MAX_BLOCKS or index >= total:
        raise MalformedError(f"block index {index} out of range for total {total}", code="range")
    return BlockFrame(stream=stream, index=index, total=total, data=data)


def block_count(size: int, block_size: int) -> int:
    return max(1, -(-size // block_size))


def check_block_size(block_size: object) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise MalformedError("block_size must be an integer")
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise MalformedError(f"block_size {block_size} is outside {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE} bytes")
    return block_size


# -- bitmaps -----------------------------------------------------------------------------------


def bitmap_from_indices(base: int, indices: Iterable[int], span: int) -> bytes:
    """Bitmap of `span` bits starting at block `base`; indices outside [base, base+span) are ignored."""
    out = bytearray((span + 7) // 8)
    for i in indices:
        k = i - base
        if 0 <= k < span:
            out[k >> 3] |= 1 << (k & 7)
    return bytes(out)


def indices_from_bitmap(base: int, bitmap: bytes, total: int) -> list[int]:
    """Set bits of `bitmap` as block indices, dropping any at or beyond `total`."""
    found = []
    for j, byte in enumerate(bitmap):
        if not byte:
            continue
        for k in range(8):
            if byte >> k & 1:
                i = base + 8 * j + k
                if i < total:
                    found.append(i)
    return found


def _b64(bitmap: bytes) -> str:
    return base64.b64encode(bitmap).decode()


def _unb64(value: object, field: str) -> bytes:
    if not isinstance(value, str) or len(value) > (MAX_BITMAP_BYTES * 4) // 3 + 4:
        raise MalformedError(f"{field} must be a base64 string of at most {MAX_BITMAP_BYTES} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise MalformedError(f"{field} is not valid base64") from err


def _nat(d: dict[str, Any], key: str, high: int = 0xFFFFFFFF) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise MalformedError(f"field {key!r} must be an integer in 0..{high}")
    return value


def _exec_id(d: dict[str, Any]) -> str:
    value = d.get("x")
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise MalformedError("field 'x' (execution id) must be a string of 1..64 characters")
    return value


# -- acks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """All blocks below `contiguous` received, plus those set in `bitmap` (bit k = block contiguous+k)."""

    execution_id: str
    stream: int
    contiguous: int
    bitmap: bytes = b""
    group: int | None = None  # the group stream while the device follows the group topic

    def received(self, total: int) -> set[int]:
        return set(range(min(self.contiguous, total))) | set(
            indices_from_bitmap(self.contiguous, self.bitmap, total)
        )


def make_ack(execution_id: str, stream: int, have: set[int] | Iterable[int], total: int, *,
             group: int | None = None) -> Ack:
    have_set = set(have)
    contiguous = 0
    while contiguous < total and contiguous in have_set:
        contiguous += 1
    beyond = [i for i in have_set if i > contiguous]
    span = min((max(beyond) - contiguous + 1) if beyond else 0, MAX_BITMAP_BYTES * 8)
    bitmap = bitmap_from_indices(contiguous, beyond, span).rstrip(b"\x00")
    return Ack(execution_id, stream, contiguous, bitmap, group)


def encode_ack(ack: Ack) -> bytes:
    body: dict[str, Any] = {"x": ack.execution_id, "s": ack.stream, "n": ack.contiguous}
    if ack.bitmap:
        body["b"] = _b64(ack.bitmap)
    if ack.group is not None:
        body["g"] = ack.group
    return canonical_json(body)


def _group(d: dict[str, Any]) -> int | None:
    return _nat(d, "g", MAX_STREAM) if "g" in d else None


def decode_ack(message: bytes) -> Ack:
    d = parse_json(message, max_bytes=MAX_CONTROL_MESSAGE, max_depth=MAX_DEVICE_JSON_DEPTH)
    if not isinstance(d, dict):
        raise MalformedError("ack must be a JSON object")
    bitmap = _unb64(d["b"], "b") if "b" in d else b""
    return Ack(_exec_id(d), _nat(d, "s", MAX_STREAM), _nat(d, "n", MAX_BLOCKS), bitmap, _group(d))


# -- repair / resume requests --------------------------------------------------------------------


@dataclass(frozen=True)
class BlockRequest:
    """Blocks the device wants (again): set bits of `bitmap`, bit k = block offset+k."""

    execution_id: str
    stream: int
    offset: int
    bitmap: bytes
    group: int | None = None  # the group stream while the device follows the group topic

    def wanted(self, total: int) -> list[int]:
        return indices_from_bitmap(self.offset, self.bitmap, total)


def make_request(execution_id: str, stream: int, missing: Iterable[int], *,
                 group: int | None = None) -> BlockRequest:
    wanted = sorted(set(missing))
    if not wanted:
        return BlockRequest(execution_id, stream, 0, b"", group)
    offset = wanted[0]
    span = min(wanted[-1] - offset + 1, MAX_BITMAP_BYTES * 8)
    return BlockRequest(execution_id, stream, offset, bitmap_from_indices(offset, wanted, span), group)


def encode_request(request: BlockRequest) -> bytes:
    body: dict[str, Any] = {"x": request.execution_id, "s": request.stream, "o": request.offset,
                            "b": _b64(request.bitmap)}
    if request.group is not None:
        body["g"] = request.group
    return canonical_json(body)


def decode_request(message: bytes) -> BlockRequest:
    d = parse_json(message, max_bytes=MAX_CONTROL_MESSAGE, max_depth=MAX_DEVICE_JSON_DEPTH)
    if not isinstance(d, dict):
        raise MalformedError("block request must be a JSON object")
    return BlockRequest(_exec_id(d), _nat(d, "s", MAX_STREAM), _nat(d, "o", MAX_BLOCKS), _unb64(d.get("b", ""), "b"),
                        _group(d))
