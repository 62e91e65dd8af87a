"""Match finding with HDiffPatch's matcher, windowed to bound memory: covers for ``covers-xz``, bsdiff blocks.

`find_covers` returns the covers of HDiffPatch's own (full, uncompressed) diff, whose cover choice
counts the cost of every cover: the ``covers-xz`` encoding (`otaformat.delta_covers`) writes them.
`covers_to_bsdiff` turns base/target into the three bsdiff blocks (control triples, diff, extra) that
`otaformat.delta` compresses into a ``bsdiff4-xz`` (or ``bsdiff4-zstd``) patch: the wire format does
not change, only how the matches are found. HDiffPatch (the `hdiffpatch` package, imported lazily: only
a builder needs it, never a device or the cloud) finds the covers with a divsufsort suffix array (4
bytes per base byte instead of bsdiff4's 16) and drops covers that do not pay for themselves. For
the bsdiff blocks we ask it for an uncompressed HPatchLite diff, whose cover list is simple to read
(below), and rewrite it; its full diff chooses fewer, longer covers (it prices them against its
run-length coded diff bytes), which compress better, so `find_covers` reads that one.

Windowed for large images: the target is cut into `segments` pieces and each is matched against the
proportional slice of the base widened by `margin` on both sides, so the suffix array covers a window,
not the whole base (peak memory about 4.5x the window instead of 4.5x the base). Deterministic.

HDiffPatch layout read by `find_covers` (compression none): ``HDIFF13&``, the compression name and a
NUL, then eleven big-endian base-128 varints (new size, old size, cover count, cover buffer length,
then lengths of the RLE and new-data parts we do not read); the cover buffer follows: per cover a tag
byte (bit 7 the old position is behind the previous cover's end, bit 6 more bytes follow, bits 0-5
the first value bits) with the rest of the old-position delta, varint new-position delta from the
previous cover's end, varint length.

HPatchLite layout read here (compression "none"): ``'h' 'I' 0x00 sizes``, where sizes' low 3 bits give
the byte count of the little-endian new size and the next 3 bits that of the uncompressed size; both
sizes follow. Then a big-endian base-128 varint (high bit = more) cover count, and per cover: varint
length; a tag byte (bits 0-4 the first value bits, bit 5 more bytes follow, bit 6 the old position is
behind the previous cover's end, bit 7 the cover is an exact copy with no diff bytes) with the rest of
the old-position delta; varint new-position delta from the previous cover's end; the literal new bytes
up to the cover; the cover's add-diff bytes (unless an exact copy).
"""

from __future__ import annotations

import ctypes
from array import array
from collections.abc import Callable
from typing import Any

import bsdiff4.core as bscore

Progress = Callable[[float], None]
_ENC = bscore.encode_int64

WINDOW_FROM = 1 << 20  # targets of this size and more are matched in windows
SEGMENTS = 6  # target pieces, each matched against its own base window
MARGIN = 12  # a window reaches target/MARGIN bytes beyond its proportional base slice, on each side


def available() -> bool:
    try:
        import hdiffpatch  # noqa: F401
    except ImportError:
        return False
    return True


def release_heap() -> None:
    """Give the suffix array's freed pages back to the OS (glibc keeps them otherwise) before the next step."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _lite_diff(base: bytes, target: bytes) -> bytes:
    import hdiffpatch

    diff: Callable[..., Any] = hdiffpatch.diff_lite
    return bytes(diff(base, target, compression="none", validate=False))


def _uvarint(buf: bytes, i: int, value: int = 0, more: bool = True) -> tuple[int, int]:
    while more:
        b = buf[i]
        i += 1
        value = (value << 7) | (b & 127)
        more = bool(b >> 7)
    return value, i


class _Blocks:
    """Accumulates bsdiff triples, diff and extra bytes; positions are absolute in base and target."""

    def __init__(self, target_len: int) -> None:
        self.control = bytearray()  # encoded triples, 24 bytes each (a list of tuples costs 6x more)
        self.diff = bytearray(target_len)  # covers never add up to more than the target: no regrowth
        self.n_diff = 0
        self.extra = bytearray()
        self._add = 0  # add length of the triple being built
        self._extra = 0  # extra length of the triple being built
        self._old_end = 0  # old position after the last cover

    def _triple(self, add: int, extra: int, seek: int) -> None:
        self.control += _ENC(add) + _ENC(extra) + _ENC(seek)

    def finish(self) -> bytes:
        """The control block: every triple, the last one (trailing add and extra bytes) included."""
        self._triple(self._add, self._extra, 0)
        return bytes(self.control)

    def literal(self, data: bytes) -> None:
        self.extra += data
        self._extra += len(data)

    def cover(self, old_pos: int, length: int, diff: bytes | None) -> None:
        self._triple(self._add, self._extra, old_pos - self._old_end)
        if diff is not None:
            self.diff[self.n_diff : self.n_diff + length] = diff
        self.n_diff += length
        self._add, self._extra, self._old_end = length, 0, old_pos + length


def _read_lite(lite: bytes, blocks: _Blocks, old_offset: int, new_len: int) -> None:
    if lite[:3] != b"hI\x00":
        raise ValueError("hdiffpatch returned an unexpected lite diff header")
    n_new, n_unc = lite[3] & 7, (lite[3] >> 3) & 7
    i = 4
    if int.from_bytes(lite[i : i + n_new], "little") != new_len:
        raise ValueError("hdiffpatch lite diff declares another target size")
    i += n_new + n_unc
    count, i = _uvarint(lite, i)
    new_back = old_back = 0
    for _ in range(count):
        length, i = _uvarint(lite, i)
        tag = lite[i]
        delta, i = _uvarint(lite, i + 1, tag & 31, bool(tag & 32))
        old_pos = old_back - delta if tag & 64 else old_back + delta
        new_pos, i = _uvarint(lite, i)
        new_pos += new_back
        blocks.literal(lite[i : i + new_pos - new_back])
        i += new_pos - new_back
        if tag & 128:
            diff = None
        else:
            diff, i = lite[i : i + length], i + length
        if length:
            blocks.cover(old_offset + old_pos, length, diff)
        new_back, old_back = new_pos + length, old_pos + length
    if new_back != new_len or i != len(lite):
        raise ValueError("hdiffpatch lite diff does not cover the target exactly")


def _full_diff(base: bytes, target: bytes) -> bytes:
    import hdiffpatch

    diff: Callable[..., Any] = hdiffpatch.diff
    return bytes(diff(base, target, None, validate=False))


def _read_full(full: bytes, covers: array, old_offset: int, new_offset: int, old_len: int, new_len: int) -> None:
    if full[:8] != b"HDIFF13&" or b"\0" not in full[8:40]:
        raise ValueError("hdiffpatch returned an unexpected diff header")
    i = full.index(b"\0", 8) + 1
    sizes = []
    for _ in range(4):
        value, i = _uvarint(full, i)
        sizes.append(value)
    new_size, old_size, count, _cover_bytes = sizes
    if (new_size, old_size) != (new_len, old_len):
        raise ValueError("hdiffpatch diff declares other sizes")
    for _ in range(7):
        _, i = _uvarint(full, i)
    new_back = old_back = 0
    for _ in range(count):
        tag = full[i]
        delta, i = _uvarint(full, i + 1, tag & 63, bool(tag & 64))
        old_pos = old_back - delta if tag & 128 else old_back + delta
        gap, i = _uvarint(full, i)
        length, i = _uvarint(full, i)
        new_pos = new_back + gap
        if length < 1 or old_pos < 0 or old_pos + length > old_len or new_pos + length > new_len:
            raise ValueError("hdiffpatch cover is out of range")
        covers.extend((new_offset + new_pos, old_offset + old_pos, length))
        new_back, old_back = new_pos + length, old_pos + length


def find_covers(base: bytes, target: bytes, progress: Progress | None = None) -> array:
    """HDiffPatch's covers as a flat array of (new position, old position, length), absolute,
    in increasing new position; windowed from WINDOW_FROM bytes on (see the module docstring)."""
    covers = array("q")
    windows = _windows(len(base), len(target))
    view_b, view_t = memoryview(base), memoryview(target)
    for n, (t0, t1, b0, b1) in enumerate(windows, 1):
        if t1 > t0 and b1 > b0:
            whole = (b0, b1, t0, t1) == (0, len(base), 0, len(target))  # no copies of what is already bytes
            full = _full_diff(base if whole else bytes(view_b[b0:b1]), target if whole else bytes(view_t[t0:t1]))
            _read_full(full, covers, b0, t0, b1 - b0, t1 - t0)
            del full
            release_heap()
        if progress:
            progress(n / len(windows))
    return covers


def _windows(base_len: int, target_len: int) -> list[tuple[int, int, int, int]]:
    """(target start, target end, base start, base end) per segment."""
    if target_len < WINDOW_FROM or base_len == 0:
        return [(0, target_len, 0, base_len)]
    step = -(-target_len // SEGMENTS)
    margin = target_len // MARGIN
    out = []
    for t0 in range(0, target_len, step):
        t1 = min(t0 + step, target_len)
        b0 = max(0, t0 * base_len // target_len - margin)
        b1 = min(base_len, t1 * base_len // target_len + margin)
        out.append((t0, t1, b0, b1))
    return out


def covers_to_bsdiff(
    base: bytes, target: bytes, progress: Progress | None = None
) -> tuple[bytes, memoryview, bytes]:
    """(control, diff, extra) of a bsdiff patch from base to target, matched by HDiffPatch.

    The diff block is a view (not a copy) of a target-sized buffer: the caller compresses it in place.
    """
    blocks = _Blocks(len(target))
    windows = _windows(len(base), len(target))
    view_b, view_t = memoryview(base), memoryview(target)
    for n, (t0, t1, b0, b1) in enumerate(windows, 1):
        lite = _lite_diff(bytes(view_b[b0:b1]), bytes(view_t[t0:t1]))
        _read_lite(lite, blocks, b0, t1 - t0)
        del lite
        release_heap()
        if progress:
            progress(n / len(windows))
    if blocks.n_diff + len(blocks.extra) != len(target):
        raise ValueError("hdiffpatch covers and literals do not add up to the target")
    return blocks.finish(), memoryview(blocks.diff)[: blocks.n_diff], bytes(blocks.extra)
