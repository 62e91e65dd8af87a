"""The ``covers-xz`` delta encoding: a cover list in varint columns, diff and literal bytes, each LZMA2.

A patch rebuilds the target from left to right as literal runs and covers. A cover copies `length`
bytes of the base from `old` and adds (mod 256) as many diff bytes; before each cover come `gap`
literal bytes, after the last one the rest of the target is literal. Layout, byte for byte (the
normative text is docs/package-format.md section 7):

- magic ``OTACVX01``, then twelve big-endian u64: target length, cover count, LZMA2 dictionary size,
  the raw lengths of the five streams (gaps, old deltas, lengths, diff, extra) and the compressed
  lengths of the first four (the extra stream runs to the end of the patch);
- five raw LZMA2 streams: gaps (one varint per cover), old deltas (one zigzag varint per cover: the
  cover's base offset minus the end of the previous cover, 0 for the first), lengths (one varint
  per cover, at least 1), diff bytes (one per covered byte), extra (literal) bytes.

Varints are LEB128: 7 bits per byte, low group first, the high bit set on every byte but the last,
at most 9 bytes and below 2**63. The encoder writes the columns apart (each compresses better alone)
and the streams apart so a decoder reads all five at once, each through its own bounded
decompressor: `iter_apply` holds no stream in memory beyond its LZMA2 dictionary and one chunk.

Applying trusts nothing: every declared length is checked against the limit and against each
other before any decompressor starts, every cover against the base, the target and its streams
before it is used, and every stream must end exactly where its declared length says.
Not here: finding the covers (`otaformat.hdiffmatch`), choosing the encoding (`otaformat.delta`).
"""

from __future__ import annotations

import lzma
import struct
from array import array
from collections.abc import Callable, Iterable, Iterator

from .errors import UnsafeArchiveError, VerificationError

MAGIC = b"OTACVX01"
HEADER = struct.Struct(">8s12Q")
CHUNK = 1 << 16  # output is produced in pieces of at most this many bytes
MAX_VARINT = 9  # bytes: 63 bits
MIN_DICT = 4096
MAX_DICT = 1 << 30  # liblzma's LZMA2 limit is 1.5 GiB; the encoder never asks for more than the target
_OPTIONS = {"lc": 1, "lp": 0, "pb": 0}  # measured best on code deltas (bench/README.md)
_CONTROL_OPTIONS = ({"lc": 1, "lp": 0, "pb": 0}, {"lc": 0, "lp": 0, "pb": 0})
Progress = Callable[[float], None]
EFFORTS: dict[str, dict[str, int]] = {  # LZMA2 settings; "fast" searches 32 candidates instead of 512
    "max": {"preset": 9 | lzma.PRESET_EXTREME},
    "fast": {"preset": 9, "nice_len": 273, "depth": 32},
}


def _uvarint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def _masks(n: int) -> tuple[int, int]:
    """(0x80 in each of n bytes, 0x7f in each of n bytes) as integers."""
    return int.from_bytes(b"\x80" * n, "little"), int.from_bytes(b"\x7f" * n, "little")


def _sub(new: bytes | memoryview, old: bytes | memoryview) -> bytes:
    """(new - old) mod 256 byte by byte, with big integers (no per-byte Python loop): borrows stay
    inside each byte because every byte of the minuend has its high bit set, fixed afterwards."""
    n = len(new)
    x, y = int.from_bytes(new, "little"), int.from_bytes(old, "little")
    high, low = _masks(n)
    return (((x | high) - (y & low)) ^ (~(x ^ y) & high)).to_bytes(n, "little")


def _add(old: bytes | memoryview, diff: bytes) -> bytes:
    """(old + diff) mod 256 byte by byte; a zero diff (an exact copy) is the base bytes as they are."""
    n = len(diff)
    if diff.count(0) == n:
        return bytes(old)
    x, y = int.from_bytes(old, "little"), int.from_bytes(diff, "little")
    high, low = _masks(n)
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(n, "little")


def _xz(pieces: Iterable[bytes | bytearray | memoryview], raw_length: int, dict_size: int,
        options: dict[str, int], effort: str) -> bytes:
    """One raw LZMA2 stream of `raw_length` bytes given in pieces; the dictionary is capped by both."""
    comp = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=[{
        "id": lzma.FILTER_LZMA2, **EFFORTS[effort], "dict_size": max(MIN_DICT, min(raw_length, dict_size)), **options}])
    out = [comp.compress(piece) for piece in pieces]
    out.append(comp.flush())
    return b"".join(out)


def encode(base: bytes, target: bytes, covers: array, dict_size: int | None = None,
           progress: Progress | None = None, effort: str = "max") -> bytes:
    """The patch for `covers`: a flat array of (new position, old position, length) triples, in
    increasing, non-overlapping new positions, each inside base and target, every length >= 1.

    `dict_size` caps the LZMA2 dictionary (and with it the encoder's memory, about 11x it); None =
    each stream's own length. `effort` picks the LZMA2 match finder's search (`EFFORTS`); the decoder
    needs to know nothing of it.
    """
    report = progress or (lambda _fraction: None)
    gaps, olds, lengths = bytearray(), bytearray(), bytearray()
    new_end = old_end = covered = 0
    for i in range(0, len(covers), 3):
        new, old, length = covers[i], covers[i + 1], covers[i + 2]
        if new < new_end or length < 1 or old < 0 or old + length > len(base) or new + length > len(target):
            raise ValueError(f"cover {i // 3} ({new}, {old}, {length}) is out of order or out of range")
        _uvarint(new - new_end, gaps)
        _uvarint(_zigzag(old - old_end), olds)
        _uvarint(length, lengths)
        new_end, old_end, covered = new + length, old + length, covered + length
    cap = MAX_DICT if dict_size is None else max(MIN_DICT, min(dict_size, MAX_DICT))
    raw = [len(gaps), len(olds), len(lengths), covered, len(target) - covered]
    packed = [min((_xz([col], len(col), cap, o, effort) for o in _CONTROL_OPTIONS), key=len)
              for col in (gaps, olds, lengths)]
    report(0.05)
    # the diff and extra streams are fed to LZMA2 piece by piece: neither ever exists whole
    packed.append(_xz(_diff_pieces(memoryview(base), memoryview(target), covers), covered, cap, _OPTIONS, effort))
    report(0.85)
    packed.append(_xz(_extra_pieces(memoryview(target), covers), len(target) - covered, cap, _OPTIONS, effort))
    report(1.0)
    dict_used = max(MIN_DICT, min(cap, max(raw)))
    header = HEADER.pack(MAGIC, len(target), len(covers) // 3, dict_used, *raw, *(len(p) for p in packed[:4]))
    return header + b"".join(packed)


def _diff_pieces(base: memoryview, target: memoryview, covers: array) -> Iterator[bytes]:
    for i in range(0, len(covers), 3):
        new, old, length = covers[i], covers[i + 1], covers[i + 2]
        for at in range(0, length, CHUNK):  # in pieces: the big integers cost a few times their length
            step = min(CHUNK, length - at)
            yield _sub(target[new + at : new + at + step], base[old + at : old + at + step])


def _extra_pieces(target: memoryview, covers: array) -> Iterator[memoryview]:
    new_end = 0
    for i in range(0, len(covers), 3):
        yield target[new_end : covers[i]]
        new_end = covers[i] + covers[i + 2]
    yield target[new_end:]


def covers_from_bsdiff(control: bytes, decode: Callable[[bytes], int]) -> array:
    """Covers from bsdiff control triples (x add bytes at the base cursor, y extra bytes, seek z)."""
    covers = array("q")
    new = old = 0
    for i in range(0, len(control), 24):
        x, y, z = (decode(control[i + k : i + k + 8]) for k in (0, 8, 16))
        if x:
            covers.extend((new, old, x))
        new, old = new + x + y, old + x + z
    return covers


class _Stream:
    """One raw LZMA2 stream read in order, never past its declared raw length."""

    def __init__(self, name: str, data: memoryview, raw_length: int, dict_size: int) -> None:
        self.name, self.data, self.left = name, data, raw_length
        size = max(MIN_DICT, min(raw_length, dict_size))
        self._dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2,
                                                                           "dict_size": size}])
        self._buf = b""
        self._pos = 0

    def read(self, n: int) -> bytes:
        if n > self.left:
            raise VerificationError(f"covers-xz {self.name} stream is shorter than its covers need", code="delta")
        out = bytearray()
        while len(out) < n:
            if self._pos == len(self._buf):
                self._refill(n - len(out))
            take = min(n - len(out), len(self._buf) - self._pos)
            out += self._buf[self._pos : self._pos + take]
            self._pos += take
        self.left -= n
        return bytes(out)

    def _refill(self, want: int) -> None:
        if self._dec.eof:
            raise VerificationError(f"covers-xz {self.name} stream ends before its declared length", code="delta")
        try:
            self._buf = self._dec.decompress(self.data, max_length=max(want, CHUNK))
        except lzma.LZMAError as err:
            raise VerificationError(f"covers-xz {self.name} stream is corrupt: {err}", code="delta") from err
        self.data = memoryview(b"")  # the decompressor keeps what it has not read yet
        self._pos = 0
        if not self._buf:
            raise VerificationError(f"covers-xz {self.name} stream is truncated", code="delta")

    def varint(self) -> int:
        value = shift = 0
        for _ in range(MAX_VARINT):
            byte = self.read(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise VerificationError(f"covers-xz {self.name} varint is longer than {MAX_VARINT} bytes", code="delta")

    def finish(self) -> None:
        """The stream must be consumed exactly and end with LZMA2's end marker, nothing after it."""
        if self.left:
            raise VerificationError(f"covers-xz {self.name} stream has {self.left} unused bytes", code="delta")
        if self._pos != len(self._buf):
            raise VerificationError(f"covers-xz {self.name} stream is longer than declared", code="delta")
        if not self._dec.eof:
            try:
                more = self._dec.decompress(self.data, max_length=1)
            except lzma.LZMAError as err:
                raise VerificationError(f"covers-xz {self.name} stream is corrupt: {err}", code="delta") from err
            self.data = memoryview(b"")
            if more:
                raise VerificationError(f"covers-xz {self.name} stream is longer than declared", code="delta")
        if not self._dec.eof or self._dec.unused_data:
            raise VerificationError(f"covers-xz {self.name} stream is truncated or has trailing data", code="delta")


def _open(base: bytes, patch: bytes, max_output: int) -> tuple[int, int, list[_Stream]]:
    if len(patch) < HEADER.size:
        raise VerificationError("covers-xz patch is shorter than its header", code="delta")
    magic, target_len, count, dict_size, *lengths = HEADER.unpack_from(patch)
    raw, packed = lengths[:5], lengths[5:]
    if magic != MAGIC:
        raise VerificationError("covers-xz patch has a bad magic", code="delta")
    if target_len > max_output:
        raise UnsafeArchiveError(f"patch declares {target_len} output bytes, the limit is {max_output}", code="bomb")
    if count > target_len or raw[3] + raw[4] != target_len or raw[3] < count:
        raise VerificationError("covers-xz cover count and stream lengths do not add up", code="delta")
    if any(n < count or n > MAX_VARINT * count for n in raw[:3]):
        raise VerificationError("covers-xz control stream lengths do not fit the cover count", code="delta")
    if not MIN_DICT <= dict_size <= MAX_DICT:
        raise VerificationError(f"covers-xz dictionary size {dict_size} is out of range", code="delta")
    if sum(packed) > len(patch) - HEADER.size:
        raise VerificationError("covers-xz patch is truncated", code="delta")
    view, at, streams = memoryview(patch), HEADER.size, []
    for name, raw_len, packed_len in zip(("gaps", "old", "length", "diff", "extra"), raw, [*packed, None],
                                         strict=True):
        end = len(patch) if packed_len is None else at + packed_len
        streams.append(_Stream(name, view[at:end], raw_len, dict_size))
        at = end
    return target_len, count, streams


def iter_apply(base: bytes, patch: bytes, max_output: int) -> Iterator[bytes]:
    """The target, in pieces of at most CHUNK bytes; raises VerificationError / UnsafeArchiveError."""
    target_len, count, (gaps, olds, lengths, diff, extra) = _open(base, patch, max_output)
    view_b = memoryview(base)
    new = old_end = 0
    for _ in range(count):
        gap, delta, length = gaps.varint(), olds.varint(), lengths.varint()
        old = old_end + (-((delta + 1) >> 1) if delta & 1 else delta >> 1)
        if length < 1 or gap > target_len - new or length > target_len - new - gap:
            raise VerificationError("covers-xz cover runs past the end of the target", code="delta")
        if old < 0 or old > len(base) - length:
            raise VerificationError("covers-xz cover reads outside the base", code="delta")
        yield from _pieces(extra, gap)
        for at in range(0, length, CHUNK):
            step = min(CHUNK, length - at)
            yield _add(view_b[old + at : old + at + step], diff.read(step))
        new, old_end = new + gap + length, old + length
    yield from _pieces(extra, target_len - new)
    for stream in (gaps, olds, lengths, diff, extra):
        stream.finish()


def _pieces(stream: _Stream, n: int) -> Iterator[bytes]:
    for at in range(0, n, CHUNK):
        yield stream.read(min(CHUNK, n - at))


def apply(base: bytes, patch: bytes, max_output: int) -> bytes:
    return b"".join(iter_apply(base, patch, max_output))
