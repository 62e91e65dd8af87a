"""Applying a ``covers-xz`` patch (layout in `otaformat.delta_covers` and docs/package-format.md section 7).

Streaming and strict: the six streams are read side by side, each through its own LZMA2 decompressor
capped at its declared raw length, and the target comes out in pieces of at most `CHUNK` bytes, so
memory is the base, one piece and each stream's dictionary. Every declared length is checked against
the output limit and against the others before any decompressor starts; every cover against the base,
the target and its streams before it is used; every stream must end exactly at its declared length
with LZMA2's end marker and nothing after it. Errors: VerificationError (code "delta") for a corrupt
patch, UnsafeArchiveError ("bomb") for one declaring more output than allowed.
Not here: building patches (`otaformat.delta_covers`), choosing encodings (`otaformat.delta`).
"""

from __future__ import annotations

import lzma
from collections.abc import Iterator

from .delta_covers import CHUNK, HEADER, MAGIC, MAX_DICT, MAX_VARINT, MIN_DICT, STREAMS
from .errors import UnsafeArchiveError, VerificationError


def _bad(text: str) -> VerificationError:
    return VerificationError(f"covers-xz {text}", code="delta")


def _masks(n: int) -> tuple[int, int]:
    return int.from_bytes(b"\x80" * n, "little"), int.from_bytes(b"\x7f" * n, "little")


def _add(old: bytes | memoryview, diff: bytes) -> bytes:
    """(old + diff) mod 256 byte by byte with big integers; a zero diff is the base bytes as they are."""
    n = len(diff)
    if diff.count(0) == n:
        return bytes(old)
    x, y = int.from_bytes(old, "little"), int.from_bytes(diff, "little")
    high, low = _masks(n)
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(n, "little")


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
            raise _bad(f"{self.name} stream is shorter than its covers need")
        out = bytearray()
        while len(out) < n:
            if self._pos == len(self._buf):
                self._refill(n - len(out))
            take = min(n - len(out), len(self._buf) - self._pos)
            out += self._buf[self._pos : self._pos + take]
            self._pos += take
        self.left -= n
        return bytes(out)

    def _decompress(self, limit: int) -> bytes:
        try:
            out = self._dec.decompress(self.data, max_length=limit)
        except lzma.LZMAError as err:
            raise _bad(f"{self.name} stream is corrupt: {err}") from err
        self.data = memoryview(b"")  # the decompressor keeps what it has not read yet
        return out

    def _refill(self, want: int) -> None:
        if self._dec.eof:
            raise _bad(f"{self.name} stream ends before its declared length")
        self._buf, self._pos = self._decompress(max(want, CHUNK)), 0
        if not self._buf:
            raise _bad(f"{self.name} stream is truncated")

    def varint(self) -> int:
        value = shift = 0
        for _ in range(MAX_VARINT):
            byte = self.read(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise _bad(f"{self.name} varint is longer than {MAX_VARINT} bytes")

    def finish(self) -> None:
        """The stream must be consumed exactly and end with LZMA2's end marker, nothing after it."""
        if self.left:
            raise _bad(f"{self.name} stream has {self.left} unused bytes")
        if self._pos != len(self._buf) or (not self._dec.eof and self._decompress(1)):
            raise _bad(f"{self.name} stream is longer than declared")
        if not self._dec.eof or self._dec.unused_data:
            raise _bad(f"{self.name} stream is truncated or has trailing data")


class _Diff:
    """The diff bytes of the covers: stored bytes with the zero runs of the zero-run stream put back."""

    def __init__(self, runs: _Stream, stored: _Stream) -> None:
        self.runs, self.stored = runs, stored
        self._before = self._zeros = 0  # stored bytes before the next run, zeros left in the current one

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            if not self._before and not self._zeros:
                if not self.runs.left:  # no runs left: the rest is stored
                    out += self.stored.read(n - len(out))
                    break
                self._before, self._zeros = self.runs.varint(), self.runs.varint()
                if not self._zeros:
                    raise _bad("zero run of length 0")
            if self._before:
                take = min(n - len(out), self._before)
                out += self.stored.read(take)
                self._before -= take
            else:
                take = min(n - len(out), self._zeros)
                out += bytes(take)
                self._zeros -= take
        return bytes(out)

    def finish(self) -> None:
        if self._before or self._zeros:
            raise _bad("zero runs reach past the covered bytes")
        self.runs.finish()
        self.stored.finish()


def _open(patch: bytes, max_output: int) -> tuple[int, int, list[_Stream]]:
    if len(patch) < HEADER.size:
        raise _bad("patch is shorter than its header")
    magic, target_len, count, dict_size, covered, *lengths = HEADER.unpack_from(patch)
    raw, packed = lengths[:6], lengths[6:]
    gaps, olds, lens, runs, stored, extra = raw
    if magic != MAGIC:
        raise _bad("patch has a bad magic")
    if target_len > max_output:
        raise UnsafeArchiveError(f"patch declares {target_len} output bytes, the limit is {max_output}", code="bomb")
    if count > covered or covered + extra != target_len or stored > covered:
        raise _bad("cover count and stream lengths do not add up")
    if any(n < count or n > MAX_VARINT * count for n in (gaps, olds, lens)) or runs > 2 * MAX_VARINT * covered:
        raise _bad("control stream lengths do not fit the cover count")
    if not MIN_DICT <= dict_size <= MAX_DICT:
        raise _bad(f"dictionary size {dict_size} is out of range")
    if sum(packed) > len(patch) - HEADER.size:
        raise _bad("patch is truncated")
    view, at, streams = memoryview(patch), HEADER.size, []
    for name, raw_len, packed_len in zip(STREAMS, raw, [*packed, None], strict=True):
        end = len(patch) if packed_len is None else at + packed_len
        streams.append(_Stream(name, view[at:end], raw_len, dict_size))
        at = end
    return target_len, count, streams


def iter_apply(base: bytes, patch: bytes, max_output: int) -> Iterator[bytes]:
    """The target, in pieces of at most CHUNK bytes; raises VerificationError / UnsafeArchiveError."""
    target_len, count, (gaps, olds, lengths, runs, stored, extra) = _open(patch, max_output)
    diff = _Diff(runs, stored)
    view_b = memoryview(base)
    new = old_end = 0
    for _ in range(count):
        gap, delta, length = gaps.varint(), olds.varint(), lengths.varint()
        old = old_end + (-((delta + 1) >> 1) if delta & 1 else delta >> 1)
        if length < 1:
            raise _bad("cover of length 0")
        if gap > target_len - new or length > target_len - new - gap:
            raise _bad("cover runs past the end of the target")
        if old < 0 or old > len(base) - length:
            raise _bad("cover reads outside the base")
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
