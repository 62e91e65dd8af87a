"""otaformat.streaming.judge_buffer decides as otaformat.verdict.judge (every fixture, tampered variants,
every compression), and the scan judges a large package held in a mmap in constant heap."""

from __future__ import annotations

import gc
import hashlib
import mmap
import tempfile
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chalicelib.services.scan import BuiltinScanner, judge_package
from otaformat import verdict
from otaformat.build import BuildSpec, SourceFile, build_full
from otaformat.manifest import format_timestamp
from otaformat.signing import generate_key, key_id, load_public_key
from otaformat.streaming import judge_buffer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
MiB = 1 << 20


def _same(data: bytes, trusted) -> verdict.Verdict:
    want = verdict.judge(data, trusted, now=NOW, model=None)
    got = judge_buffer(data, trusted, now=NOW, model=None, content_file=tempfile.TemporaryFile)
    assert (got.accepted, got.code, got.reason, got.manifest, got.key_id) == (
        want.accepted, want.code, want.reason, want.manifest, want.key_id)
    if want.accepted:
        assert got.content is not None and bytes(got.content) == bytes(want.content or b"")
    return got


@pytest.mark.parametrize("name", [*sorted(p.name for p in FIXTURES.glob("*.otapkg")), "not-a-package.bin"])
def test_fixtures_same_verdict(name):
    key = load_public_key((FIXTURES / "publisher.pub").read_bytes())
    _same((FIXTURES / name).read_bytes(), {key_id(key): key})


def _spec(compression: str) -> BuildSpec:
    return BuildSpec(app="big", version="1.0.0", models=("model-a",), created=format_timestamp(NOW),
                     expires=format_timestamp(NOW + timedelta(days=7)), compression=compression)


@pytest.mark.parametrize("compression", ["none", "zstd", "xz"])
def test_tampered_same_verdict(compression):
    key = generate_key()
    trusted = {key_id(key.public_key()): key.public_key()}
    data = build_full(_spec(compression), [SourceFile("a", bytes(range(256)) * 200), SourceFile("b", b"")], key)
    assert _same(data, trusted).accepted
    end = 12 + int.from_bytes(data[8:12], "big")
    for offset in (3, 10, 30, end - 2, end + 1, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[offset] ^= 0x20
        _same(bytes(bad), trusted)
    _same(data[:-3], trusted)
    _same(data + b"x", trusted)


def test_scan_judges_a_mapped_64_mib_package_in_constant_heap():
    key = generate_key()
    trusted = {key_id(key.public_key()): key.public_key()}
    piece = hashlib.sha256(b"p").digest() * 2048
    data = build_full(_spec("none"), [SourceFile("lib/a.bin", piece * 1024)], key)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        del data
        gc.collect()
        mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    now = NOW.timestamp()
    tracemalloc.start()
    try:
        judgement = judge_package(mapped, trusted, now)  # type: ignore[arg-type]
        assert BuiltinScanner().scan(mapped, judgement.manifest, judgement.content) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert judgement.reasons == () and judgement.manifest is not None
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_builtin_scanner_finds_eicar_in_a_mapping():
    from chalicelib.services.scan import EICAR
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 5000 + EICAR + b"y")
        f.flush()
        mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    assert BuiltinScanner().scan(mapped, None, None)
