"""otaformat.delta: every encoding round-trips, the smallest wins, and hostile patches are refused."""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import random
import shutil
import struct
import subprocess

import bsdiff4.core as bscore
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaformat import delta as delta_mod
from otaformat.build import BuildSpec, SourceFile, build_delta, build_full
from otaformat.container import verify_package
from otaformat.delta import apply_delta, apply_verified_delta, make_delta
from otaformat.errors import UnsafeArchiveError, VerificationError
from otaformat.manifest import DELTA_ENCODINGS
from otaformat.signing import generate_key, key_id

ENCODINGS = DELTA_ENCODINGS


def _binary(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(8) for _ in range(200)]
    return b"".join(rng.choice(words) for _ in range(size // 8))


BASE = _binary(1, 40_000)
SHIFTED = BASE[:10_000] + b"inserted bytes" + BASE[10_000:30_000] + _binary(2, 3_000) + BASE[30_000:]
CASES = {
    "empty-both": (b"", b""),
    "empty-base": (b"", b"new content " * 50),
    "empty-target": (b"old content", b""),
    "identical": (BASE, BASE),
    "shifted-and-extended": (BASE, SHIFTED),
    "unrelated": (_binary(3, 5_000), _binary(4, 6_000)),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_encoding_round_trips(encoding, case):
    base, target = CASES[case]
    name, patch = make_delta(base, target, (encoding,))
    assert name == encoding
    assert apply_delta(encoding, base, patch, len(target)) == target


def test_make_delta_keeps_the_smallest_and_is_deterministic():
    sizes = {enc: len(make_delta(BASE, SHIFTED, (enc,))[1]) for enc in ENCODINGS}
    encoding, patch = make_delta(BASE, SHIFTED, ENCODINGS)
    assert len(patch) == min(sizes.values())
    assert sizes[encoding] == len(patch)
    assert make_delta(BASE, SHIFTED, ENCODINGS) == (encoding, patch)
    assert len(patch) < len(SHIFTED) // 10


def test_default_is_covers_xz_alone():
    encoding, patch = make_delta(BASE, SHIFTED)
    assert encoding == "covers-xz" and patch == make_delta(BASE, SHIFTED, ("covers-xz",))[1]


def test_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match="unknown delta encoding"):
        make_delta(b"a", b"b", ("xdelta",))
    with pytest.raises(VerificationError) as info:
        apply_delta("xdelta", b"a", b"patch", 10)
    assert info.value.code == "delta"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_output_beyond_the_cap_is_a_bomb(encoding):
    _, patch = make_delta(BASE, SHIFTED, (encoding,))
    with pytest.raises(UnsafeArchiveError) as info:
        apply_delta(encoding, BASE, patch, len(SHIFTED) - 1)
    assert info.value.code == "bomb"


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("cut", [1, 7, 40])
def test_truncated_patch_is_refused(encoding, cut):
    _, patch = make_delta(BASE, SHIFTED, (encoding,))
    with pytest.raises(VerificationError):
        apply_delta(encoding, BASE, patch[:-cut], len(SHIFTED))


def _bsdiff_patch(control: bytes, diff: bytes, extra: bytes, len_dst: int) -> bytes:
    blocks = [bz2.compress(b) for b in (control, diff, extra)]
    head = b"BSDIFF40" + b"".join(bscore.encode_int64(n) for n in (len(blocks[0]), len(blocks[1]), len_dst))
    return head + b"".join(blocks)


def _triple(x: int, y: int, z: int) -> bytes:
    return b"".join(bscore.encode_int64(v) for v in (x, y, z))


@pytest.mark.parametrize(
    ("control", "diff", "extra", "len_dst"),
    [
        (_triple(-5, 5, 0), b"", b"x" * 5, 5),  # negative diff length would make memcpy run wild
        (_triple(0, -3, 0), b"", b"", 0),
        (_triple(10, 0, 0), b"\x00" * 5, b"", 10),  # diff block shorter than the control says
        (_triple(0, 4, 0), b"", b"abcd", 8),  # covers less than declared
        (_triple(0, 4, 0) + b"\x00" * 5, b"", b"abcd", 4),  # not whole triples
    ],
)
def test_hostile_bsdiff_control_is_refused_before_the_c_patcher(control, diff, extra, len_dst):
    with pytest.raises(VerificationError) as info:
        apply_delta("bsdiff4", b"base bytes", _bsdiff_patch(control, diff, extra, len_dst), 100)
    assert info.value.code == "delta"


def test_bsdiff_block_bomb_is_capped():
    control = _triple(0, 4, 0)
    patch = _bsdiff_patch(control, b"", b"\x00" * (8 << 20), 4)
    with pytest.raises(UnsafeArchiveError) as info:
        apply_delta("bsdiff4", b"", patch, 4)
    assert info.value.code == "bomb"


@pytest.mark.parametrize("encoding", ["bsdiff4-zstd", "bsdiff4-xz"])
def test_compressed_block_larger_than_declared_is_a_bomb(encoding):
    pack = delta_mod._zstd if encoding == "bsdiff4-zstd" else delta_mod._xz
    magic = delta_mod.BSZ_MAGIC if encoding == "bsdiff4-zstd" else delta_mod.BSX_MAGIC
    small_window = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
        3, window_log=10, write_content_size=0))  # a window the decoder accepts, so only the count stops it
    bomb = b"\x00" * (4 << 20)
    ze = small_window.compress(bomb) if encoding == "bsdiff4-zstd" else pack(bomb)
    zc, zd = pack(_triple(0, 4, 0)), pack(b"")
    patch = struct.pack(">8s6Q", magic, 4, 24, 0, 4, len(zc), len(zd)) + zc + zd + ze
    with pytest.raises(UnsafeArchiveError) as info:
        apply_delta(encoding, b"", patch, 4)
    assert info.value.code == "bomb"


def test_bsdiff4_zstd_header_lengths_must_add_up():
    _, patch = make_delta(BASE, SHIFTED, ("bsdiff4-zstd",))
    fields = list(struct.unpack_from(">8s6Q", patch))
    fields[3] += 1  # control length no longer a whole number of triples
    bad = struct.pack(">8s6Q", *fields) + patch[struct.calcsize(">8s6Q"):]
    with pytest.raises(VerificationError) as info:
        apply_delta("bsdiff4-zstd", BASE, bad, len(SHIFTED))
    assert info.value.code == "delta"


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_patches_never_crash_or_exceed_the_cap(encoding, data):
    base, target = BASE[:4000], SHIFTED[:4200]
    _, patch = make_delta(base, target, (encoding,))
    mutated = bytearray(patch)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    try:
        out = apply_delta(encoding, base, bytes(mutated), len(target))
    except VerificationError:
        return
    assert len(out) <= len(target)


@pytest.fixture(scope="module")
def packages():
    key = generate_key()
    trusted = {key_id(key.public_key()): key.public_key()}
    spec = BuildSpec(app="demo", version="1.0.0", models=("m",), created="2026-01-01T00:00:00Z",
                     expires="2030-01-01T00:00:00Z")
    old = verify_package(build_full(spec, [SourceFile("bin/a", BASE, True)], key), trusted)
    new = verify_package(build_full(dataclasses.replace(spec, version="1.1.0"),
                                    [SourceFile("bin/a", SHIFTED, True)], key), trusted)
    pkg = verify_package(build_delta(old, new, key, created="2026-02-01T00:00:00Z"), trusted)
    return old, new, pkg


def test_apply_verified_delta_rebuilds_the_target(packages):
    old, new, pkg = packages
    assert apply_verified_delta(pkg.manifest, old.content, pkg.content) == new.content


def test_wrong_base_is_refused_before_applying(packages):
    _, new, pkg = packages
    with pytest.raises(VerificationError) as info:
        apply_verified_delta(pkg.manifest, new.content, pkg.content)
    assert info.value.code == "base-mismatch"


def test_result_hash_is_checked_last(packages):
    old, _, pkg = packages
    forged = dataclasses.replace(pkg.manifest.delta, target_sha256=hashlib.sha256(b"other").hexdigest())
    manifest = dataclasses.replace(pkg.manifest, delta=forged)
    with pytest.raises(VerificationError) as info:
        apply_verified_delta(manifest, old.content, pkg.content)
    assert info.value.code == "hash"


def test_full_package_is_not_a_delta(packages):
    old, _, _ = packages
    with pytest.raises(VerificationError) as info:
        apply_verified_delta(old.manifest, old.content, b"")
    assert info.value.code == "not-delta"


def test_window_log_is_bounded():
    assert delta_mod._window_log(0) >= 10
    assert delta_mod._window_log(1 << 40) == 31


def test_bsdiff4_encoding_is_the_standard_bsdiff4_format():
    import bsdiff4

    _, patch = make_delta(BASE, SHIFTED, ("bsdiff4",))
    assert bsdiff4.patch(BASE, patch) == SHIFTED


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd CLI not installed")
def test_zstd_dict_patch_applies_with_the_zstd_cli(tmp_path):
    _, patch = make_delta(BASE, SHIFTED, ("zstd-dict",))
    (tmp_path / "base").write_bytes(BASE)
    (tmp_path / "patch.zst").write_bytes(patch)
    subprocess.run(["zstd", "-q", "-d", "--long=31", f"--patch-from={tmp_path / 'base'}", str(tmp_path / "patch.zst"),
                    "-o", str(tmp_path / "out")], check=True, timeout=120)
    assert (tmp_path / "out").read_bytes() == SHIFTED


@pytest.mark.parametrize(("created", "expires", "encodings", "compression", "expected"), [
    ("2031-01-01T00:00:00Z", None, None, "none", "expires must be after"),          # inherited expiry passed
    ("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z", None, "none", "expires must be after"),
    ("2026-02-01T00:00:00Z", None, ("bsdiff5",), "none", "unknown delta encoding"),
    ("2026-02-01T00:00:00Z", None, None, "lz4", "compression"),
])
def test_delta_inputs_are_refused_before_the_diff(packages, created, expires, encodings, compression, expected):
    from otaformat.build import delta_body
    from otaformat.errors import MalformedError

    old, new, _ = packages
    diffs: list[int] = []

    def differ(base: bytes, target: bytes, wanted: tuple[str, ...] | None) -> tuple[str, bytes]:
        diffs.append(len(target))
        return make_delta(base, target, wanted)

    with pytest.raises(MalformedError, match=expected):
        delta_body(old, new, created=created, expires=expires, encodings=encodings, compression=compression,
                   differ=differ)
    assert diffs == []


def test_valid_delta_inputs_reach_the_diff_once(packages):
    from otaformat.build import delta_body

    old, new, _ = packages
    diffs: list[int] = []

    def differ(base: bytes, target: bytes, wanted: tuple[str, ...] | None) -> tuple[str, bytes]:
        diffs.append(len(target))
        return make_delta(base, target, wanted)

    body, _ = delta_body(old, new, created="2026-02-01T00:00:00Z", differ=differ)
    assert diffs == [len(new.content)] and body["delta"]["base_version"] == "1.0.0"


@pytest.mark.parametrize(("raw", "value"), [  # docs/package-format.md section 7
    ("0500000000000080", -5), ("0500000000000000", 5), ("0000000000000080", 0), ("ffffffffffffff7f", (1 << 63) - 1),
])
def test_control_integers_are_sign_magnitude_as_documented(raw, value):
    assert delta_mod._int64(bytes.fromhex(raw)) == value
    if value:
        assert bscore.encode_int64(value) == bytes.fromhex(raw)
