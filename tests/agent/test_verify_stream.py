"""agent.verify_stream.verify_spool decides exactly as verify_download on the same bytes (every fixture,
tampered variants, every compression) and verifies a large spool in constant memory."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.verify import Policy, Refusal, verify_download
from agent.verify_stream import verify_spool
from otaformat import wire
from otaformat.build import BuildSpec, SourceFile, build_full
from otaformat.container import split_container
from otaformat.errors import FormatError
from otaformat.manifest import format_timestamp
from otaformat.messages import JobDocument
from otaformat.signing import generate_key, key_id, load_public_key, parse_envelope

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
MiB = 1 << 20


def _job(data: bytes) -> JobDocument:
    try:
        envelope = parse_envelope(split_container(data).envelope)
    except FormatError:
        envelope = {"manifest": {}, "signatures": []}
    return JobDocument("job-1", "exec-1", "dev-1", 1, "block", envelope, len(data),
                       hashlib.sha256(data).hexdigest(), 1024, wire.block_count(len(data), 1024), 64)


def _fixture_trusted():
    key = load_public_key((FIXTURES / "publisher.pub").read_bytes())
    return {key_id(key): key}


def _decide(fn, *args, **kwargs):
    try:
        verified = fn(*args, **kwargs)
    except Refusal as refusal:
        return (refusal.state, refusal.code, refusal.reason), None
    return ("ACCEPT", None, None), verified


def _both(tmp_path: Path, data: bytes, policy: Policy, job: JobDocument | None = None, base=None):
    job = job or _job(data)
    spool = tmp_path / "package.bin"
    spool.write_bytes(data)
    base_content = lambda app, version: base  # noqa: E731
    want, expected = _decide(verify_download, job, data, policy, now=NOW, base_content=base_content)
    got, verified = _decide(verify_spool, job, str(spool), policy, now=NOW, base_content=base_content,
                            workdir=str(tmp_path / "work"))
    assert got == want
    if expected is not None:
        assert verified is not None and verified.manifest == expected.manifest
        assert bytes(verified.content) == bytes(expected.content)
        assert [(p, m, bytes(d)) for p, m, d in verified.files()] == [(p, m, bytes(d)) for p, m, d in expected.files()]
    return got


@pytest.mark.parametrize("name", [*sorted(p.name for p in FIXTURES.glob("*.otapkg")), "not-a-package.bin"])
def test_every_fixture_same_decision(tmp_path, name):
    data = (FIXTURES / name).read_bytes()
    delta = "delta" in name
    policy = Policy("dev-1", "model-a", "1.0.0", _fixture_trusted(), {}, {"demo": "1.0.0"} if delta else {})
    base = None
    if delta:
        full = (FIXTURES / "good-full-1.0.0.otapkg").read_bytes()
        base = verify_download(_job(full), full, Policy("dev-1", "model-a", "1.0.0", _fixture_trusted(), {}, {}),
                               now=NOW, base_content=lambda a, v: None).content
    _both(tmp_path, data, policy, base=base)


def _spec(compression: str, **kw) -> BuildSpec:
    now = NOW.replace(microsecond=0)
    return BuildSpec(app="big", version="1.0.0", models=("model-a",), created=format_timestamp(now),
                     expires=format_timestamp(now + timedelta(days=7)), compression=compression, **kw)


@pytest.mark.parametrize("compression", ["none", "zstd", "xz"])
def test_tampered_bytes_same_decision(tmp_path, compression):
    key = generate_key()
    policy = Policy("dev-1", "model-a", "1.0.0", {key_id(key.public_key()): key.public_key()}, {}, {})
    files = [SourceFile("a.bin", bytes(range(256)) * 300), SourceFile("empty", b""), SourceFile("b.txt", b"x" * 5000)]
    data = build_full(_spec(compression), files, key)
    assert _both(tmp_path, data, policy)[0] == "ACCEPT"
    envelope_end = 12 + int.from_bytes(data[8:12], "big")
    seen = set()
    for offset in (0, 9, 40, envelope_end - 3, envelope_end, envelope_end + 7, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[offset] ^= 0x41
        seen.add(_both(tmp_path, bytes(bad), policy)[1])
    # the job's hash does not match a corrupted transfer: FAILED before anything is parsed
    job = _job(data)
    bad = bytearray(data)
    bad[-1] ^= 1
    assert _both(tmp_path, bytes(bad), policy, job=job)[:2] == ("FAILED", "hash")
    assert _both(tmp_path, data[:-5], policy, job=_job(data[:-5]))[0] == "REJECTED"
    assert len(seen) >= 2


def test_large_spool_verifies_in_constant_memory(tmp_path):
    """A 64 MiB package (two 32 MiB files) verifies with a traced peak under 8 MiB (the in-memory
    path needs several times the package)."""
    key = generate_key()
    policy = Policy("dev-1", "model-a", "1.0.0", {key_id(key.public_key()): key.public_key()}, {}, {})
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB, repeated: compresses fast
    files = [SourceFile("lib/one.bin", block * 512), SourceFile("lib/two.bin", block[::-1] * 512)]
    data = build_full(_spec("none"), files, key)
    del files
    job = _job(data)
    spool = tmp_path / "package.bin"
    spool.write_bytes(data)
    del data
    gc.collect()
    tracemalloc.start()
    try:
        verified = verify_spool(job, str(spool), policy, now=NOW, base_content=lambda a, v: None,
                                workdir=str(tmp_path / "work"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert len(verified.content) == 64 * MiB
    assert [p for p, _, _ in verified.files()] == ["lib/one.bin", "lib/two.bin"]
