"""The ``covers-xz`` delta encoding: the cover list in varint columns, diff and literal bytes, each LZMA2.

A patch rebuilds the target from left to right as literal runs and covers. A cover copies `length`
bytes of the base from `old` and adds (mod 256) as many diff bytes; before each cover come `gap`
literal bytes, after the last one the rest of the target is literal. Layout, byte for byte (the
normative text is docs/package-format.md section 7):

- magic ``OTACVX01``, then fifteen big-endian u64: target length, cover count, LZMA2 dictionary
  size, covered bytes (the sum of the cover lengths), the raw lengths of the six streams (gaps, old
  deltas, lengths, zero runs, stored diff, extra) and the compressed lengths of the first five (the
  extra stream runs to the end of the patch);
- six raw LZMA2 streams: gaps (one varint per cover), old deltas (one zigzag varint per cover: the
  cover's base offset minus the end of the previous cover's base range, 0 for the first), lengths
  (one varint per cover, at least 1), zero runs (varint pairs: stored diff bytes before the run,
  run length >= 1), stored diff bytes (the covers' diff bytes without the runs), extra (literal) bytes.

Varints are LEB128: 7 bits per byte, low group first, the high bit set on every byte but the last,
at most 9 bytes. Columns and streams are kept apart because each compresses better alone and so a
decoder can read all six side by side (`otaformat.delta_covers_apply`).

This module builds patches from covers (`encode`), picks the covers worth keeping (`prune`) and reads
bsdiff triples as covers. Not here: applying (`delta_covers_apply`), finding covers
(`otaformat.hdiffmatch`), choosing the encoding (`otaformat.delta`).
"""

from __future__ import annotations

import lzma
import re
import struct
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator

MAGIC = b"OTACVX01"
HEADER = struct.Struct(">8s15Q")
CHUNK = 1 << 16  # output is produced in pieces of at most this many bytes
MAX_VARINT = 9  # bytes: 63 bits
STREAMS = ("gaps", "old", "length", "zero-run", "diff", "extra")
MIN_DICT = 4096
PRUNE_FROM = 0.1  # `prune` looks at covers with more than this share of non-zero diff bytes
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


def _xz(pieces: Iterable[bytes | bytearray | memoryview], raw_length: int, dict_size: int,
        options: dict[str, int], effort: str) -> bytes:
    """One raw LZMA2 stream of `raw_length` bytes given in pieces; the dictionary is capped by both."""
    comp = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=[{
        "id": lzma.FILTER_LZMA2, **EFFORTS[effort], "dict_size": max(MIN_DICT, min(raw_length, dict_size)), **options}])
    out = [comp.compress(piece) for piece in pieces]
    out.append(comp.flush())
    return b"".join(out)


def encode(base: bytes, target: bytes, covers: array, dict_size: int | None = None,
           progress: Progress | None = None, effort: str = "max", zero_runs: int = 0) -> bytes:
    """The patch for `covers`: a flat array of (new position, old position, length) triples, in
    increasing, non-overlapping new positions, each inside base and target, every length >= 1.

    `dict_size` caps the LZMA2 dictionary (and with it the encoder's memory, about 11x it); None =
    each stream's own length. `effort` picks the LZMA2 match finder's search (`EFFORTS`). Runs of at
    least `zero_runs` zero diff bytes (0: none) go to the zero-run stream instead of the diff stream:
    LZMA2 spends most of its time on them, for about the same size. The decoder needs none of these.
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
    packed = [min((_xz([col], len(col), cap, o, effort) for o in _CONTROL_OPTIONS), key=len)
              for col in (gaps, olds, lengths)]
    report(0.05)
    # the diff and extra streams are fed to LZMA2 piece by piece: neither ever exists whole
    runs = _ZeroRuns(zero_runs)
    pieces = _diff_pieces(memoryview(base), memoryview(target), covers)
    diff = _xz(runs.split(pieces), covered, cap, _OPTIONS, effort)
    packed += [_xz([runs.runs], len(runs.runs), cap, _CONTROL_OPTIONS[0], effort), diff]
    report(0.85)
    packed.append(_xz(_extra_pieces(memoryview(target), covers), len(target) - covered, cap, _OPTIONS, effort))
    report(1.0)
    raw = [len(gaps), len(olds), len(lengths), len(runs.runs), runs.stored, len(target) - covered]
    dict_used = max(MIN_DICT, min(cap, max(raw)))
    header = HEADER.pack(MAGIC, len(target), len(covers) // 3, dict_used, covered, *raw,
                         *(len(p) for p in packed[:5]))
    return header + b"".join(packed)


class _ZeroRuns:
    """Splits the diff bytes into stored bytes and zero runs of at least `minimum` bytes (0: no runs);
    `runs` collects (stored bytes since the previous run, run length) varint pairs."""

    _PARTS = re.compile(rb"\x00+|[^\x00]+")

    def __init__(self, minimum: int) -> None:
        self.minimum, self.runs, self.stored = minimum, bytearray(), 0
        self._since = self._zeros = 0

    def split(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        """The stored bytes of all `pieces`; the runs are in `runs` once this is exhausted."""
        yield from map(self.feed, pieces)
        yield self.close()

    def feed(self, piece: bytes) -> bytes:
        if not self.minimum:
            self.stored += len(piece)
            return piece
        out = bytearray()
        for part in self._PARTS.finditer(piece):
            if piece[part.start()] == 0:
                self._zeros += part.end() - part.start()
            else:
                self._flush(out)
                out += part.group()
                self._since += part.end() - part.start()
        self.stored += len(out)
        return bytes(out)

    def close(self) -> bytes:
        out = bytearray()
        self._flush(out)
        self.stored += len(out)
        return bytes(out)

    def _flush(self, out: bytearray) -> None:
        if self._zeros and self.minimum and self._zeros >= self.minimum:
            _uvarint(self._since, self.runs)
            _uvarint(self._zeros, self.runs)
            self._since = 0
        else:
            out += bytes(self._zeros)
            self._since += self._zeros
        self._zeros = 0


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


def prune(base: bytes, target: bytes, covers: array) -> array:
    """The covers that pay for themselves; the bytes of the others become literals.

    A matcher keeps covers whose diff bytes are cheap by its own measure; some are not once LZMA
    sees them: when more than PRUNE_FROM of a cover's diff bytes are not zero and they compress
    (zlib) no smaller than the target bytes they stand for, the literal bytes cost less. Measured on
    the bench pairs: -11 % on msgpack, neutral to -1 % elsewhere (bench/README.md).
    """
    view_b, view_t = memoryview(base), memoryview(target)
    kept = array("q")
    for i in range(0, len(covers), 3):
        new, old, length = covers[i], covers[i + 1], covers[i + 2]
        pieces = [(new + at, old + at, min(CHUNK, length - at)) for at in range(0, length, CHUNK)]
        nonzero = sum(n - _sub(view_t[t : t + n], view_b[b : b + n]).count(0) for t, b, n in pieces)
        if nonzero > PRUNE_FROM * length and not _pays(view_b, view_t, pieces):
            continue
        kept.extend((new, old, length))
    return kept


def _pays(base: memoryview, target: memoryview, pieces: list[tuple[int, int, int]]) -> bool:
    as_diff, as_literal = zlib.compressobj(6), zlib.compressobj(6)
    n_diff = n_literal = 0
    for t, b, n in pieces:
        n_diff += len(as_diff.compress(_sub(target[t : t + n], base[b : b + n])))
        n_literal += len(as_literal.compress(target[t : t + n]))
    return n_diff + len(as_diff.flush()) < n_literal + len(as_literal.flush())


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
