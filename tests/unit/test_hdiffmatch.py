"""otaformat.hdiffmatch: HDiffPatch's covers rewritten as bsdiff blocks, windowed for large targets."""

from __future__ import annotations

import io
import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaformat import delta as delta_mod
from otaformat import hdiffmatch
from otaformat.delta import apply_delta, make_delta

pytest.importorskip("hdiffpatch")


def _binary(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(8) for _ in range(200)]
    return b"".join(rng.choice(words) for _ in range(size // 8))


BASE = _binary(1, 60_000)
TARGET = BASE[:10_000] + b"inserted bytes" + BASE[10_000:40_000] + _binary(2, 3_000) + BASE[41_000:]


def _rebuild(base: bytes, target: bytes) -> bytes:
    control, diff, extra = hdiffmatch.covers_to_bsdiff(base, target)
    return delta_mod._patch(base, len(target), control, bytes(diff), extra)  # validates every triple first


@pytest.mark.parametrize(("base", "target"), [
    (b"", b""), (b"", b"new " * 100), (b"old", b""), (BASE, BASE), (BASE, TARGET), (_binary(3, 5000), _binary(4, 6000)),
])
def test_covers_rebuild_the_target(base, target):
    assert _rebuild(base, target) == target


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.binary(max_size=3000), edits=st.lists(st.tuples(st.integers(0, 3000), st.binary(max_size=40)),
                                                     max_size=6))
def test_covers_rebuild_any_edit(base, edits):
    target = bytearray(base)
    for pos, data in edits:
        target[pos : pos + len(data) // 2] = data
    assert _rebuild(base, bytes(target)) == bytes(target)


def test_windowed_build_round_trips_and_is_deterministic(monkeypatch):
    monkeypatch.setattr(hdiffmatch, "WINDOW_FROM", 4096)
    assert len(hdiffmatch._windows(len(BASE), len(TARGET))) == hdiffmatch.SEGMENTS
    for wanted in (None, ("bsdiff4-xz",)):
        encoding, patch = make_delta(BASE, TARGET, wanted)
        assert encoding == (wanted or ("covers-xz",))[0]
        assert apply_delta(encoding, BASE, patch, len(TARGET)) == TARGET
        assert make_delta(BASE, TARGET, wanted) == (encoding, patch)
        assert len(patch) < len(TARGET) // 10


def test_windows_cover_the_target_and_stay_inside_the_base(monkeypatch):
    monkeypatch.setattr(hdiffmatch, "WINDOW_FROM", 1000)
    windows = hdiffmatch._windows(5000, 12_345)
    assert windows[0][0] == 0 and windows[-1][1] == 12_345
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert all(0 <= b0 <= b1 <= 5000 for _, _, b0, b1 in windows)


def test_progress_is_reported_up_to_done(monkeypatch):
    seen: list[float] = []
    make_delta(BASE, TARGET, progress=seen.append)
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    monkeypatch.setattr(hdiffmatch, "WINDOW_FROM", 4096)
    seen.clear()
    make_delta(BASE, TARGET, progress=seen.append)
    assert seen[-1] == 1.0 and len(seen) > hdiffmatch.SEGMENTS


def test_without_hdiffpatch_the_bsdiff_matcher_is_used(monkeypatch):
    monkeypatch.setattr(hdiffmatch, "available", lambda: False)
    for wanted in (("bsdiff4-xz",), None):
        encoding, patch = make_delta(BASE, TARGET, wanted)
        assert apply_delta(encoding, BASE, patch, len(TARGET)) == TARGET


def test_covers_are_ordered_and_inside_their_windows(monkeypatch):
    monkeypatch.setattr(hdiffmatch, "WINDOW_FROM", 4096)
    covers = hdiffmatch.find_covers(BASE, TARGET)
    triples = [tuple(covers[i : i + 3]) for i in range(0, len(covers), 3)]
    assert triples and all(length >= 1 for _, _, length in triples)
    assert all(a[0] + a[2] <= b[0] for a, b in itertools.pairwise(triples))
    assert all(old + length <= len(BASE) and new + length <= len(TARGET) for new, old, length in triples)
    windows = hdiffmatch._windows(len(BASE), len(TARGET))
    for new, old, length in triples:
        _, t1, b0, b1 = next(w for w in windows if w[0] <= new < w[1])
        assert new + length <= t1 and b0 <= old and old + length <= b1


@pytest.mark.parametrize("full", [b"HDIFF12&\x00\x01\x01\x00" + bytes(9), b"HDIFF13&\x00\x05\x05\x00" + bytes(8)])
def test_unexpected_full_diff_is_refused(full):
    with pytest.raises(ValueError):
        hdiffmatch._read_full(full, hdiffmatch.array("q"), 0, 0, 5, 6)


@pytest.mark.parametrize("lite", [b"xx\x00\x41\x05", b"hI\x01\x41\x05\x00", b"hI\x00\x41\x07\x00"])
def test_unexpected_lite_diff_is_refused(lite):
    with pytest.raises(ValueError):
        hdiffmatch._read_lite(lite, hdiffmatch._Blocks(5), 0, 5)


def test_progress_bar_only_on_a_terminal():
    from packager.progress import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet, tty = io.StringIO(), Tty()
    for stream in (quiet, tty):
        with Progress("delta", stream) as progress:
            progress(0.5)
            progress(0.25)  # never backwards
            progress(1.0)
    assert quiet.getvalue() == ""
    assert "delta" in tty.getvalue()
    with Progress("building app 1.0.0", tty, fractions=False):  # no fraction: elapsed time only
        pass
    assert "building app 1.0.0..." in tty.getvalue()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), max_size=60).map(lambda v: v[: len(v) - len(v) % 3]))
def test_columns_are_the_documented_column_order(values):
    import bsdiff4.core as bscore

    control = b"".join(bscore.encode_int64(v) for v in values)
    expected = b"".join(control[j : j + 8] for col in range(3) for j in range(col * 8, len(control), 24))
    assert delta_mod._columns(control) == expected


def test_explicit_encodings_still_build_on_large_targets(monkeypatch):
    monkeypatch.setattr(hdiffmatch, "WINDOW_FROM", 4096)
    for encoding in ("bsdiff4", "bsdiff4-zstd", "bsdiff4-xz", "zstd-dict"):
        name, patch = make_delta(BASE, TARGET, (encoding,))
        assert name == encoding
        assert apply_delta(name, BASE, patch, len(TARGET)) == TARGET


@pytest.mark.parametrize("encoding", ["bsdiff4-xz", "covers-xz"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_windowed_patch_never_crashes_or_exceeds_the_cap(encoding, data):
    patch = bytearray(_WINDOWED[encoding])
    for _ in range(data.draw(st.integers(1, 4))):
        patch[data.draw(st.integers(0, len(patch) - 1))] = data.draw(st.integers(0, 255))
    try:
        out = apply_delta(encoding, BASE, bytes(patch), len(TARGET))
    except (delta_mod.VerificationError, delta_mod.UnsafeArchiveError):
        return
    assert len(out) <= len(TARGET)


def _windowed() -> dict[str, bytes]:
    saved = hdiffmatch.WINDOW_FROM
    hdiffmatch.WINDOW_FROM = 4096
    try:
        return {e: make_delta(BASE, TARGET, (e,))[1] for e in ("bsdiff4-xz", "covers-xz")}
    finally:
        hdiffmatch.WINDOW_FROM = saved


_WINDOWED = _windowed()
