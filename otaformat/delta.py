"""Binary delta encodings: make a patch from base to target, and apply one safely. Pure, no I/O.

Encodings (names as in `manifest.DELTA_ENCODINGS`):

- ``bsdiff4``: the classic BSDIFF40 patch of the `bsdiff4` package (control/diff/extra blocks, bzip2).
- ``bsdiff4-zstd``: the same three bsdiff blocks, the control block stored column-wise, each block
  compressed with zstd level 19 (long window). Layout: magic ``OTABSZ01``, then six big-endian u64
  (target length, control/diff/extra raw lengths, compressed control/diff lengths), then the three
  zstd frames (the extra frame runs to the end).
- ``bsdiff4-xz``: the same layout with magic ``OTABSX01`` and each block a raw LZMA2 stream (preset 9e,
  dictionary size = the block's raw length, at least 4 KiB; lc/lp/pb chosen per block by the encoder
  and carried in the LZMA2 chunk headers, so the decoder needs only the dictionary size).
- ``covers-xz``: the cover list in three varint columns, zero runs, the other diff bytes and the
  literal bytes, six raw LZMA2 streams (built by `otaformat.delta_covers`, applied by
  `otaformat.delta_covers_apply`); the default.
- ``zstd-dict``: one zstd frame of the target compressed with the whole base as a raw-content
  dictionary, long-distance matching and a window covering base + target (what ``zstd --patch-from``
  does).

With no encodings given, `make_delta` builds ``covers-xz`` alone, from HDiffPatch's own covers
(`hdiffmatch.find_covers`; bsdiff4's when the builder lacks `hdiffpatch`): it was the smallest on
every measured pair, and trying the others cost 6-7x the CPU for nothing (bench/README.md).
The bsdiff encodings' matches come from bsdiff4's suffix sort or, for the builder that has the
`hdiffpatch` package, from HDiffPatch's covers (`otaformat.hdiffmatch`; windowed from 1 MiB on, which
bounds build memory near 3-4x the image): the wire format is the same, decoders need nothing new.

Applying never trusts the patch: declared sizes are checked against `max_output` before anything is
allocated, every decompression is capped, bsdiff control triples are validated before the C patcher
sees them. `apply_verified_delta` adds the base hash check first and the result hash check last.
Not here: reading files, signatures, choosing what to install.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import struct
from collections.abc import Callable

import bsdiff4.core as bscore
import zstandard

from . import delta_covers, delta_covers_apply, hdiffmatch
from .container import bounded_zstd, check_content
from .errors import UnsafeArchiveError, VerificationError
from .manifest import DELTA_ENCODINGS, Manifest

ZSTD_LEVEL = 19
BSDIFF_MAGIC = b"BSDIFF40"
BSZ_MAGIC = b"OTABSZ01"
BSX_MAGIC = b"OTABSX01"
_BSZ_HEADER = struct.Struct(">8s6Q")
_MAX_LENGTH = (1 << 31) - 2  # bsdiff4's C core uses int lengths
ZERO_RUNS = 16  # covers-xz below WINDOW_FROM: zero runs from this length go to the zero-run stream
XZ_DICT_DIVISOR = 8  # windowed builds: LZMA dictionary = target / 8 (at least 64 KiB); the encoder needs ~11x it
Progress = Callable[[float], None]


def make_delta(
    base: bytes, target: bytes, encodings: tuple[str, ...] | None = None, progress: Progress | None = None
) -> tuple[str, bytes]:
    """Build the encodings given (default: ``covers-xz`` alone) and return (encoding, patch) for the smallest.

    Deterministic: the same inputs give the same patch. Ties go to the earlier name in DELTA_ENCODINGS.
    Matches come from HDiffPatch when the builder has it, windowed from `hdiffmatch.WINDOW_FROM` bytes
    (bounded memory and time; see `hdiffmatch`), where ``bsdiff4-xz`` is built from HDiffPatch's covers
    only; below that ``bsdiff4-xz`` is built from both matchers. `progress`, when given, is called with
    the fraction done (0 to 1) as the build goes.
    """
    wanted = tuple(encodings or ("covers-xz",))
    unknown = [e for e in wanted if e not in DELTA_ENCODINGS]
    if unknown:
        raise ValueError(f"unknown delta encoding(s): {', '.join(unknown)}")
    if len(base) > _MAX_LENGTH or len(target) > _MAX_LENGTH:
        raise ValueError("base and target must each be below 2 GiB")
    report = progress or (lambda _fraction: None)
    large = len(target) >= hdiffmatch.WINDOW_FROM and hdiffmatch.available()
    cap = max(len(target) // XZ_DICT_DIVISOR, 1 << 16) if large else None
    others = [e for e in wanted if e != "covers-xz"]
    candidates: list[tuple[int, str, bytes]] = []
    if "covers-xz" in wanted:
        share = 1.0 if not others else 0.3
        candidates.append((DELTA_ENCODINGS.index("covers-xz"), "covers-xz",
                           _covers_encode(base, target, cap, lambda f: report(share * f))))
    if others:
        candidates += _bsdiff_family(base, target, tuple(others), large, cap, report)
    report(1.0)
    best = min(candidates, key=lambda c: (len(c[2]), c[0]))
    return best[1], best[2]


def _covers_encode(base: bytes, target: bytes, cap: int | None, report: Progress) -> bytes:
    if hdiffmatch.available():
        covers = hdiffmatch.find_covers(base, target, lambda f: report(0.5 * f))
    else:
        control = bscore.diff(base, target)[0]
        covers = delta_covers.covers_from_bsdiff(control, _int64)
        del control
    covers = delta_covers.prune(base, target, covers)
    report(0.5)
    # below WINDOW_FROM (where bsdiff4 itself takes well under 0.1 s) a cheaper LZMA2 search, and zero
    # runs leave the diff stream: 5x less LZMA2 time for the same size; on larger images they cost up
    # to 1 % (bench/README.md)
    small = len(target) < hdiffmatch.WINDOW_FROM
    return delta_covers.encode(base, target, covers, cap, lambda f: report(0.5 + 0.5 * f),
                               "fast" if small else "max", ZERO_RUNS if small else 0)


def _bsdiff_family(base: bytes, target: bytes, wanted: tuple[str, ...], large: bool, cap: int | None,
                   report: Progress) -> list[tuple[int, str, bytes]]:
    """The bsdiff-layout encodings and zstd-dict, as (rank, name, patch)."""
    candidates: list[tuple[int, str, bytes]] = []
    if "zstd-dict" in wanted:  # first: its match tables and bsdiff's suffix array are never alive together
        candidates.append((3, "zstd-dict", _zdict_encode(base, target)))
    report(0.4)
    if any(name in wanted for name in ("bsdiff4", "bsdiff4-zstd")) or ("bsdiff4-xz" in wanted and not large):
        control, diff, extra = bscore.diff(base, target)
        report(0.5)
        if "bsdiff4" in wanted:
            candidates.append((0, "bsdiff4", _bsdiff_encode(len(target), control, diff, extra)))
        for rank, name in ((1, "bsdiff4-zstd"), (2, "bsdiff4-xz")):
            if name in wanted:
                candidates.append((rank, name, _blocks_encode(name, len(target), control, diff, extra)))
        del control, diff, extra
    start = 0.5 if large else 0.6
    report(start)
    if "bsdiff4-xz" in wanted and hdiffmatch.available():
        control, diff, extra = hdiffmatch.covers_to_bsdiff(
            base, target, lambda f: report(start + (0.7 - start) * f))
        candidates.append((2, "bsdiff4-xz", _blocks_encode("bsdiff4-xz", len(target), control, diff, extra, cap,
                                                           lambda f: report(0.7 + 0.3 * f))))
        del control, diff, extra
    return candidates


def apply_delta(encoding: str, base: bytes, patch: bytes, max_output: int) -> bytes:
    """Apply `patch` to `base`; never produce (or allocate for) more than `max_output` bytes.

    Raises VerificationError (code "delta") for a corrupt patch, UnsafeArchiveError ("bomb") when the
    patch declares or expands to more than `max_output` bytes.
    """
    if not 0 <= max_output <= _MAX_LENGTH:
        raise VerificationError(f"delta output limit {max_output} is out of range", code="delta")
    try:
        if encoding == "bsdiff4":
            return _bsdiff_apply(base, patch, max_output)
        if encoding in ("bsdiff4-zstd", "bsdiff4-xz"):
            return _blocks_apply(encoding, base, patch, max_output)
        if encoding == "zstd-dict":
            return _zdict_apply(base, patch, max_output)
        if encoding == "covers-xz":
            return delta_covers_apply.apply(base, patch, max_output)
    except (ValueError, TypeError, OSError, EOFError, zstandard.ZstdError, lzma.LZMAError, struct.error) as err:
        raise VerificationError(f"{encoding} patch is corrupt: {str(err)[:200]}", code="delta") from err
    raise VerificationError(f"unknown delta encoding {encoding[:40]!r}", code="delta")


def apply_verified_delta(manifest: Manifest, base_content: bytes, patch: bytes) -> bytes:
    """Check the base hash, apply the patch under the target length cap, check every result hash."""
    delta = manifest.delta
    if delta is None:
        raise VerificationError(f"{manifest.package_id} is not a delta package", code="not-delta")
    if hashlib.sha256(base_content).hexdigest() != delta.base_sha256:
        raise VerificationError(
            f"base does not match: the delta needs {delta.base_version} with SHA-256 {delta.base_sha256[:16]}...",
            code="base-mismatch",
        )
    result = apply_delta(delta.encoding, base_content, patch, delta.target_length)
    if len(result) != delta.target_length:
        raise VerificationError(
            f"delta produced {len(result)} bytes, manifest declares {delta.target_length}", code="length"
        )
    check_content(manifest, result)
    return result


# --- bsdiff4 (BSDIFF40 with bzip2 blocks) -------------------------------------------------------


def _bsdiff_encode(len_dst: int, control: bytes, diff: bytes, extra: bytes) -> bytes:
    zc, zd, ze = (bz2.compress(b, 9) for b in (control, diff, extra))
    head = BSDIFF_MAGIC + bscore.encode_int64(len(zc)) + bscore.encode_int64(len(zd)) + bscore.encode_int64(len_dst)
    return head + zc + zd + ze


def _bsdiff_apply(base: bytes, patch: bytes, max_output: int) -> bytes:
    if len(patch) < 32 or patch[:8] != BSDIFF_MAGIC:
        raise VerificationError("bsdiff4 patch has no BSDIFF40 header", code="delta")
    len_control, len_diff, len_dst = (_int64(patch[i : i + 8]) for i in (8, 16, 24))
    _check_output(len_dst, max_output)
    if len_control < 0 or len_diff < 0 or 32 + len_control + len_diff > len(patch):
        raise VerificationError("bsdiff4 patch block lengths are out of range", code="delta")
    p1, p2 = 32 + len_control, 32 + len_control + len_diff
    control = _bounded_bz2(patch[32:p1], 24 * (len_dst + 1))
    diff = _bounded_bz2(patch[p1:p2], len_dst)
    extra = _bounded_bz2(patch[p2:], len_dst)
    return _patch(base, len_dst, control, diff, extra)


def _bounded_bz2(data: bytes, limit: int) -> bytes:
    decomp = bz2.BZ2Decompressor()
    out = decomp.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise UnsafeArchiveError(f"bsdiff4 block expands beyond {limit} bytes", code="bomb")
    if not decomp.eof or decomp.unused_data:
        raise VerificationError("bsdiff4 block is truncated or has trailing data", code="delta")
    return out


# --- bsdiff4-zstd and bsdiff4-xz (bsdiff blocks, column-wise control, each block compressed) ------


def _blocks_encode(encoding: str, len_dst: int, control: bytes, diff: bytes | memoryview, extra: bytes,
                   dict_cap: int | None = None, report: Progress = lambda _fraction: None) -> bytes:
    columns = _columns(control)
    if encoding == "bsdiff4-zstd":
        zc, zd, ze = (_zstd(b) for b in (columns, diff, extra))
    elif dict_cap is None:
        zc, zd, ze = _xz(columns, None, _COLUMN_OPTIONS), _xz(diff), _xz(extra)
    else:  # large: the diff block (mostly zeros) only with lc0/lp0/pb0, which wins there; a capped dictionary
        zc = _xz(columns, dict_cap, _COLUMN_OPTIONS)
        hdiffmatch.release_heap()  # each LZMA encoder's ~11x-dictionary tables, before the next one
        report(0.1)
        zd = _xz(diff, dict_cap, _LC0)
        hdiffmatch.release_heap()
        report(0.85)
        ze = _xz(extra, dict_cap)
    magic = BSZ_MAGIC if encoding == "bsdiff4-zstd" else BSX_MAGIC
    header = _BSZ_HEADER.pack(magic, len_dst, len(control), len(diff), len(extra), len(zc), len(zd))
    return header + zc + zd + ze


def _columns(control: bytes) -> bytes:
    """The control block column-wise: every triple's first integer, then every second, then every third."""
    words = memoryview(control).cast("B").cast("Q")  # 8-byte groups moved as they are: no byte order involved
    return b"".join(words[col::3].tobytes() for col in range(3))


def _blocks_apply(encoding: str, base: bytes, patch: bytes, max_output: int) -> bytes:
    if len(patch) < _BSZ_HEADER.size:
        raise VerificationError(f"{encoding} patch is shorter than its header", code="delta")
    magic, len_dst, n_ctrl, n_diff, n_extra, z_ctrl, z_diff = _BSZ_HEADER.unpack_from(patch)
    if magic != (BSZ_MAGIC if encoding == "bsdiff4-zstd" else BSX_MAGIC):
        raise VerificationError(f"{encoding} patch has a bad magic", code="delta")
    _check_output(len_dst, max_output)
    if n_diff + n_extra != len_dst or n_ctrl % 24 or n_ctrl > 24 * (len_dst + 1):
        raise VerificationError(f"{encoding} block lengths do not add up", code="delta")
    start = _BSZ_HEADER.size
    if start + z_ctrl + z_diff > len(patch):
        raise VerificationError(f"{encoding} patch is truncated", code="delta")
    p1, p2 = start + z_ctrl, start + z_ctrl + z_diff
    unpack = _bounded_zstd if encoding == "bsdiff4-zstd" else _bounded_xz
    columns = unpack(patch[start:p1], n_ctrl)
    diff = unpack(patch[p1:p2], n_diff)
    extra = unpack(patch[p2:], n_extra)
    if (len(columns), len(diff), len(extra)) != (n_ctrl, n_diff, n_extra):
        raise VerificationError(f"{encoding} block is shorter than declared", code="delta")
    count = n_ctrl // 24
    cols = [columns[i * 8 * count : (i + 1) * 8 * count] for i in range(3)]
    control = b"".join(cols[c][k * 8 : k * 8 + 8] for k in range(count) for c in range(3))
    return _patch(base, len_dst, control, diff, extra)


# --- shared bsdiff helpers ------------------------------------------------------------------------


def _int64(raw: bytes) -> int:
    """bsdiff's sign-magnitude little-endian int64."""
    value = int.from_bytes(raw[:7] + bytes([raw[7] & 0x7F]), "little")
    return -value if raw[7] & 0x80 else value


def _patch(base: bytes, len_dst: int, control: bytes, diff: bytes, extra: bytes) -> bytes:
    """Validate every control triple so the C patcher can neither overflow nor underflow, then run it."""
    if len(control) % 24:
        raise VerificationError("bsdiff control block is not a whole number of triples", code="delta")
    new_pos = diff_pos = extra_pos = 0
    for i in range(0, len(control), 24):
        x, y = _int64(control[i : i + 8]), _int64(control[i + 8 : i + 16])
        z = _int64(control[i + 16 : i + 24])
        if x < 0 or y < 0 or abs(z) > _MAX_LENGTH:
            raise VerificationError("bsdiff control triple has a negative or huge length", code="delta")
        new_pos, diff_pos, extra_pos = new_pos + x + y, diff_pos + x, extra_pos + y
        if new_pos > len_dst or diff_pos > len(diff) or extra_pos > len(extra):
            raise VerificationError("bsdiff control runs past the end of its blocks", code="delta")
    if (new_pos, diff_pos, extra_pos) != (len_dst, len(diff), len(extra)):
        raise VerificationError("bsdiff control does not cover its blocks exactly", code="delta")
    return bytes(bscore.patch(base, len_dst, control, diff, extra))


def _check_output(declared: int, max_output: int) -> None:
    if declared < 0 or declared > max_output:
        raise UnsafeArchiveError(f"patch declares {declared} output bytes, the limit is {max_output}", code="bomb")


# --- zstd helpers and zstd-dict ------------------------------------------------------------------


def _window_log(size: int) -> int:
    return min(max(size.bit_length(), zstandard.WINDOWLOG_MIN), 31)


def _zstd(data: bytes | memoryview) -> bytes:
    """zstd 19 + long window, match tables sized to the block (not the level's default)."""
    log = _window_log(len(data))
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, source_size=len(data), window_log=log, enable_ldm=True,
        hash_log=max(log - 1, 6), chain_log=max(log - 1, 6),
        write_checksum=0, write_content_size=1, write_dict_id=0,
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def _xz_filters(raw_length: int, **extra: int) -> list[dict[str, int]]:
    return [{"id": lzma.FILTER_LZMA2, "dict_size": max(raw_length, 4096), **extra}]


_LC0: tuple[dict[str, int], ...] = ({"lc": 0, "lp": 0, "pb": 0},)
_DEFAULT_OPTIONS: tuple[dict[str, int], ...] = ({}, *_LC0)
_COLUMN_OPTIONS: tuple[dict[str, int], ...] = (*_DEFAULT_OPTIONS, {"lc": 0, "lp": 3, "pb": 3})  # 8-byte fields


def _xz(data: bytes | memoryview, dict_cap: int | None = None,
        options: tuple[dict[str, int], ...] = _DEFAULT_OPTIONS) -> bytes:
    """Raw LZMA2, preset 9e, dictionary = block size (or `dict_cap` if smaller; a decoder with the full
    block-size dictionary reads it all the same); the smallest of the literal/position `options` (lc, lp
    and pb travel in the LZMA2 chunk headers, so the decoder needs none of them)."""
    preset = 9 | lzma.PRESET_EXTREME
    size = len(data) if dict_cap is None else min(len(data), dict_cap)
    outs = [lzma.compress(data, format=lzma.FORMAT_RAW, filters=_xz_filters(size, preset=preset, **o))
            for o in options]
    return min(outs, key=len)


def _bounded_xz(data: bytes, limit: int) -> bytes:
    decomp = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_xz_filters(limit))
    out = decomp.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise UnsafeArchiveError(f"xz block expands beyond {limit} bytes", code="bomb")
    if len(out) < limit or not decomp.eof or decomp.unused_data:
        raise VerificationError("xz block is truncated or has trailing data", code="delta")
    return out


def _bounded_zstd(data: bytes, limit: int, dict_data: zstandard.ZstdCompressionDict | None = None,
                  window_log: int | None = None) -> bytes:
    window = 1 << (window_log or _window_log(limit))
    return bounded_zstd(data, limit, dict_data=dict_data, max_window_size=max(window, 1 << 10))


def _raw_dict(base: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _zdict_encode(base: bytes, target: bytes) -> bytes:
    if not base:
        return _zstd(target)
    chain, hash_ = _zdict_tables(len(base), len(target))
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, source_size=len(target), dict_size=len(base),
        window_log=_window_log(len(base) + len(target)), enable_ldm=True, chain_log=chain, hash_log=hash_,
        write_checksum=0, write_content_size=1, write_dict_id=0,
    )
    return zstandard.ZstdCompressor(dict_data=_raw_dict(base), compression_params=params).compress(target)


def _zdict_tables(base_len: int, target_len: int) -> tuple[int, int]:
    """(chain_log, hash_log): level 19's tables, shrunk so the encoder stays near 16x the target.

    The tables exist twice (the dictionary's and the compressor's): about 8 * (2**chain + 2**hash) bytes.
    The chain (a binary tree at level 19) keeps covering base + target for small inputs (below about
    1 MiB), where the patch still gains from it; the hash table matters much less (chain - 3).
    """
    default = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, source_size=target_len, dict_size=base_len)
    floor = min(20, max((base_len + target_len).bit_length(), 12))
    chain = min(default.chain_log, max(floor, (base_len + target_len).bit_length()))
    while chain > floor and 10 * (1 << chain) > 16 * target_len:
        chain -= 1
    return chain, min(default.hash_log, chain - 3)


def _zdict_apply(base: bytes, patch: bytes, max_output: int) -> bytes:
    declared = zstandard.get_frame_parameters(patch).content_size  # 0 also when unknown: then out must be empty
    _check_output(declared, max_output)
    if not base:
        out = _bounded_zstd(patch, max_output)
    else:
        out = _bounded_zstd(patch, max_output, _raw_dict(base), _window_log(len(base) + max_output))
    if len(out) != declared:
        raise VerificationError(f"zstd-dict patch gave {len(out)} bytes, its frame declares {declared}", code="delta")
    return out
