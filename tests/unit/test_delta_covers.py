"""otaformat.delta_covers (``covers-xz``): round trips from both matchers, the documented layout, hostile patches."""

from __future__ import annotations

import lzma
import random
from array import array

import bsdiff4.core as bscore
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaformat import delta_covers as dc
from otaformat import delta_covers_apply as dca
from otaformat import hdiffmatch
from otaformat.delta import _int64, apply_delta, make_delta
from otaformat.errors import UnsafeArchiveError, VerificationError


def _binary(seed: int, size: int) -> bytes:
    """Code-like bytes: a small vocabulary of 8-byte words, so matches exist at many places."""
    rng = random.Random(seed)
    words = [rng.randbytes(8) for _ in range(200)]
    return b"".join(rng.choice(words) for _ in range(size // 8))


def _relocated(base: bytes, seed: int) -> bytes:
    """A 'new build': an insertion, a deletion, and every 4-byte little-endian word past the insertion
    nudged by a constant (the way relative addresses move), plus a few random bytes."""
    rng = random.Random(seed)
    cut = len(base) // 3
    out = bytearray(base[:cut] + rng.randbytes(700) + base[cut + 500 :])
    for at in range(cut + 700, len(out) - 4, 64):
        out[at : at + 4] = ((int.from_bytes(out[at : at + 4], "little") + 0x40) & 0xFFFFFFFF).to_bytes(4, "little")
    for _ in range(20):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


BASE = _binary(1, 80_000)
TARGET = _relocated(BASE, 2)


def _bsdiff_covers(base: bytes, target: bytes) -> array:
    return dc.covers_from_bsdiff(bscore.diff(base, target)[0], _int64)


MATCHERS = {"bsdiff4": _bsdiff_covers}
if hdiffmatch.available():
    MATCHERS["hdiffpatch"] = hdiffmatch.find_covers


@pytest.mark.parametrize("matcher", sorted(MATCHERS))
@pytest.mark.parametrize(("base", "target"), [
    (b"", b""), (b"", b"new " * 100), (b"old", b""), (BASE, BASE), (BASE, TARGET),
    (_binary(3, 5000), _binary(4, 6000)), (BASE[:1], BASE[:1] * 3),
])
def test_round_trips_from_either_matcher(matcher, base, target):
    patch = dc.encode(base, target, MATCHERS[matcher](base, target))
    assert dca.apply(base, patch, len(target)) == target


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.integers(0, 20_000), cut=st.integers(0, 60))
def test_round_trips_on_relocated_builds(seed, size, cut):
    base = _binary(seed, size)
    target = _relocated(base, seed)[cut:] if size > 1000 else _binary(seed + 1, size)
    for find in MATCHERS.values():
        for zero_runs in (0, 16):
            patch = dc.encode(base, target, find(base, target), effort="fast", zero_runs=zero_runs)
            assert dca.apply(base, patch, len(target)) == target


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_round_trips_for_any_valid_cover_list(data):
    """Covers the matchers never produce: overlapping in the base, backwards, long and one byte."""
    base = data.draw(st.binary(min_size=1, max_size=400))
    target = data.draw(st.binary(max_size=600))
    covers, new = array("q"), 0
    while new < len(target) and data.draw(st.booleans()):
        new += data.draw(st.integers(0, len(target) - new - 1))
        length = data.draw(st.integers(1, min(len(base), len(target) - new)))
        covers.extend((new, data.draw(st.integers(0, len(base) - length)), length))
        new += length
    zero_runs = data.draw(st.sampled_from([0, 1, 3, 16]))
    patch = dc.encode(base, target, covers, dict_size=4096, zero_runs=zero_runs)
    assert dca.apply(base, patch, len(target)) == target


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, dc.CHUNK + 3])
def test_byte_arithmetic_is_mod_256(n):
    rng = random.Random(n)
    new, old = rng.randbytes(n), rng.randbytes(n)
    diff = dc._sub(new, old)
    assert diff == bytes((a - b) & 255 for a, b in zip(new, old, strict=True))
    assert dca._add(old, diff) == new


def test_encoder_refuses_covers_out_of_order_or_range():
    for covers in ((0, 0, 4, 2, 0, 4), (0, 0, 0), (0, 10, 8), (14, 0, 4), (0, -1, 2)):
        with pytest.raises(ValueError, match="cover"):
            dc.encode(b"x" * 16, b"y" * 16, array("q", covers))


def _streams(patch: bytes) -> list[bytes]:
    fields = dc.HEADER.unpack_from(patch)
    at, raw = dc.HEADER.size, []
    for packed in (*fields[11:], None):
        end = len(patch) if packed is None else at + packed
        raw.append(lzma.decompress(patch[at:end], format=lzma.FORMAT_RAW,
                                   filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 4096}]))
        at = end
    return raw


@pytest.mark.parametrize(("zero_runs", "runs", "stored"), [(0, b"", bytes(7)), (4, bytes([0, 7]), b"")])
def test_layout_is_the_documented_one(zero_runs, runs, stored):
    """docs/package-format.md section 7, byte for byte, on a hand-made patch."""
    base, target = b"0123456789", b"AB3456XY789Z"
    covers = array("q", (2, 3, 4, 8, 7, 3))  # '3456' from 3, '789' from 7
    patch = dc.encode(base, target, covers, zero_runs=zero_runs)
    fields = dc.HEADER.unpack_from(patch)
    assert dc.HEADER.size == 128 and fields[:5] == (b"OTACVX01", 12, 2, 4096, 7)
    assert fields[5:11] == (2, 2, 2, len(runs), len(stored), 5)
    # gaps 2 2; old deltas zigzag(3) = 6, zigzag(0) = 0; lengths 4 3; the 7 zero diff bytes stored or one run
    assert _streams(patch) == [bytes([2, 2]), bytes([6, 0]), bytes([4, 3]), runs, stored, b"ABXYZ"]
    assert dca.apply(base, patch, len(target)) == target


@pytest.mark.parametrize("zero_runs", [1, 2, 16])
def test_zero_runs_round_trip_across_cover_and_piece_boundaries(zero_runs):
    base = bytes(dc.CHUNK + 100) + BASE[:5000]
    target = bytes(dc.CHUNK + 50) + b"\x01" + bytes(49) + BASE[:2000] + b"\x02\x00\x00" + BASE[2003:5000]
    covers = array("q", (0, 0, dc.CHUNK + 100, dc.CHUNK + 100, dc.CHUNK + 100, 5000))
    patch = dc.encode(base, target, covers, zero_runs=zero_runs)
    assert dca.apply(base, patch, len(target)) == target
    assert len(_streams(patch)[4]) < 10  # the stored diff bytes are the two non-zero ones and short runs


def _patch(target_len: int, streams: list[bytes], *, count: int | None = None, dict_size: int = 4096,
           covered: int | None = None, raw: list[int] | None = None, packed: list[int] | None = None,
           tail: bytes = b"") -> bytes:
    """A patch from raw streams, with any header field overridden (what a hostile sender controls)."""
    blobs = [lzma.compress(s, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 4096}])
             for s in streams]
    raw = raw or [len(s) for s in streams]
    packed = packed or [len(b) for b in blobs[:5]]
    n = len(streams[2]) if count is None else count
    c = len(streams[4]) if covered is None else covered
    return dc.HEADER.pack(dc.MAGIC, target_len, n, dict_size, c, *raw, *packed) + b"".join(blobs) + tail


GOOD = [bytes([1]), bytes([2]), bytes([3]), b"", bytes(3), b"ab"]  # 'a', base[1:4], 'b'
RUNS = [bytes([1]), bytes([2]), bytes([3]), bytes([1, 2]), bytes(1), b"ab"]  # the same, 2 of 3 zeros as a run
BASE5 = b"01234"


def test_hand_made_patches_apply():
    assert dca.apply(BASE5, _patch(5, GOOD), 5) == b"a123b"
    assert dca.apply(BASE5, _patch(5, RUNS, covered=3), 5) == b"a123b"


def _with(stream: int, data: bytes, base: list[bytes] = GOOD) -> list[bytes]:
    return [data if i == stream else s for i, s in enumerate(base)]


HOSTILE = {
    "bad magic": (b"OTACVX02" + _patch(5, GOOD)[8:], VerificationError),
    "header cut": (_patch(5, GOOD)[:50], VerificationError),
    "last stream cut": (_patch(5, GOOD)[:-2], VerificationError),
    "trailing bytes": (_patch(5, GOOD, tail=b"\0"), VerificationError),
    "target past the limit": (_patch(6, GOOD), UnsafeArchiveError),
    "huge target": (_patch(1 << 62, GOOD), UnsafeArchiveError),
    "huge cover count": (_patch(5, GOOD, count=1 << 40), VerificationError),
    "more covers than declared columns": (_patch(5, GOOD, count=2), VerificationError),
    "covered plus extra is not the target": (_patch(5, _with(5, b"abc")), VerificationError),
    "column longer than nine bytes a cover": (_patch(5, _with(0, bytes(10))), VerificationError),
    "huge declared diff": (_patch(5, GOOD, raw=[1, 1, 1, 0, 1 << 40, 2]), VerificationError),
    "huge covered length": (_patch(5, GOOD, covered=1 << 40), VerificationError),
    "packed lengths past the patch": (_patch(5, GOOD, packed=[1 << 40, 1, 1, 1, 1]), VerificationError),
    "dictionary too small": (_patch(5, GOOD, dict_size=1), VerificationError),
    "dictionary too large": (_patch(5, GOOD, dict_size=1 << 40), VerificationError),
    "zero-length cover": (_patch(5, _with(5, b"abcd", _with(4, bytes(1), _with(2, bytes([0])))), covered=1),
                          VerificationError),
    "gap past the target": (_patch(5, _with(0, bytes([9]))), VerificationError),
    "cover past the target": (_patch(5, _with(2, bytes([5]))), VerificationError),
    "old position below zero": (_patch(5, _with(1, bytes([3]))), VerificationError),
    "old position past the base": (_patch(5, _with(1, bytes([6]))), VerificationError),
    "varint never ends": (_patch(5, _with(0, bytes([0x81] * 9))), VerificationError),
    "varint runs out of its column": (_patch(5, _with(0, bytes([0x81])), count=1), VerificationError),
    "unused control bytes": (_patch(5, _with(0, bytes([1, 0])), count=1), VerificationError),
    "stored diff shorter than declared": (_patch(5, _with(4, bytes(2)), raw=[1, 1, 1, 0, 3, 2], covered=3),
                                          VerificationError),
    "extra stream longer than declared": (_patch(5, _with(5, b"abc"), raw=[1, 1, 1, 0, 3, 2]), VerificationError),
    "zero run of length 0": (_patch(5, _with(3, bytes([1, 0]), RUNS), covered=3), VerificationError),
    "zero run past the covered bytes": (_patch(5, _with(3, bytes([1, 5]), RUNS), covered=3), VerificationError),
    "zero runs and stored bytes fall short": (_patch(5, _with(3, bytes([0, 1]), RUNS), covered=3), VerificationError),
    "zero-run stream with half a pair": (_patch(5, _with(3, bytes([1, 2, 0]), RUNS), covered=3), VerificationError),
    "empty patch": (b"", VerificationError),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_patch_is_refused(case):
    patch, error = HOSTILE[case]
    with pytest.raises(error) as info:
        dca.apply(BASE5, patch, 5)
    assert info.value.code == ("bomb" if error is UnsafeArchiveError else "delta")
    with pytest.raises(error):  # through otaformat.delta too, which maps liblzma's errors to VerificationError
        apply_delta("covers-xz", BASE5, patch, 5)


@pytest.fixture(scope="module")
def real_patch() -> bytes:
    return make_delta(BASE, TARGET, ("covers-xz",))[1]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_patch_never_crashes_or_exceeds_the_cap(real_patch, data):
    patch = bytearray(real_patch)
    for _ in range(data.draw(st.integers(1, 4))):
        patch[data.draw(st.integers(0, len(patch) - 1))] = data.draw(st.integers(0, 255))
    try:
        out = apply_delta("covers-xz", BASE, bytes(patch), len(TARGET))
    except (VerificationError, UnsafeArchiveError):
        return
    assert len(out) == len(TARGET)


def test_output_comes_in_bounded_pieces(real_patch):
    pieces = list(dca.iter_apply(BASE, real_patch, len(TARGET)))
    assert b"".join(pieces) == TARGET and max(len(p) for p in pieces) <= dc.CHUNK


def test_default_build_is_covers_xz_and_deterministic(real_patch):
    """Sizes against the other encodings are measured on real binaries in bench/README.md, not here."""
    assert make_delta(BASE, TARGET) == ("covers-xz", real_patch)
    assert len(real_patch) < len(TARGET) // 20


def test_prune_drops_covers_that_cost_more_than_their_literals():
    rng = random.Random(5)
    noise, text = rng.randbytes(4000), b"the same words again and again " * 130
    base = BASE[:4000] + noise
    target = BASE[:4000] + text[:4000]
    covers = array("q", (0, 0, 4000, 4000, 4000, 4000))  # an exact copy, then text "matched" against noise
    kept = dc.prune(base, target, covers)
    assert list(kept) == [0, 0, 4000]
    assert dca.apply(base, dc.encode(base, target, kept), len(target)) == target
    assert len(dc.encode(base, target, kept)) < len(dc.encode(base, target, covers))
