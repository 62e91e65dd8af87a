"""The agent decides exactly as tests/fixtures/expected.json says, and installs the good fixtures."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.verify import Policy, Refusal, verify_download
from otaformat import wire
from otaformat.container import split_container
from otaformat.errors import FormatError
from otaformat.messages import JobDocument
from otaformat.signing import key_id, load_public_key, parse_envelope

from .conftest import Harness
from .pkgtools import frames

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = FIXTURES / "expected.json"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
pytestmark = pytest.mark.skipif(not EXPECTED.exists(), reason="tests/fixtures/expected.json is not there yet")


def _expected() -> dict:
    return json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}


def _trusted():
    key = load_public_key((FIXTURES / "publisher.pub").read_bytes())
    return {key_id(key): key}


def _job(data: bytes, epn: str = "dev-1", stream: int = 5) -> JobDocument:
    try:
        envelope = parse_envelope(split_container(data).envelope)
    except FormatError:
        envelope = {"manifest": {}, "signatures": []}
    return JobDocument("job-1", f"exec-{stream}", epn, stream, "block", envelope, len(data),
                       hashlib.sha256(data).hexdigest(), 1024, wire.block_count(len(data), 1024), 64)


def _base() -> bytes:
    data = (FIXTURES / "good-full-1.0.0.otapkg").read_bytes()
    policy = Policy("dev-1", "model-a", "1.0.0", _trusted(), {}, {})
    return verify_download(_job(data), data, policy, now=NOW, base_content=lambda a, v: None).content


@pytest.mark.parametrize("name", sorted(_expected()))
def test_decision_matches_expected(name):
    want = _expected()[name]
    data = (FIXTURES / name).read_bytes()
    delta = "delta" in name
    policy = Policy("dev-1", "model-a", "1.0.0", _trusted(), {}, {"demo": "1.0.0"} if delta else {})
    base = _base() if delta else None
    try:
        verified = verify_download(_job(data), data, policy, now=NOW, base_content=lambda app, version: base)
        got = ("accept", None)
    except Refusal as refusal:
        got = ("reject", refusal.code)
        verified = None
    assert got == (want["verdict"], want["code"])
    if verified is not None and delta:
        assert verified.manifest.version == "1.1.0"


def _deliver(h: Harness, name: str, stream: int) -> None:
    data = (FIXTURES / name).read_bytes()
    job = _job(data, stream=stream)
    h.job(job)
    for f in frames(job, data):
        h.send("blk", f)


def test_good_fixtures_install_full_then_delta(config):
    h = Harness(replace(config, model="model-a", trusted_keys=_trusted()))
    h.agent.wall = lambda: NOW
    _deliver(h, "good-full-1.0.0.otapkg", 1)
    _deliver(h, "good-delta-1.0.0-to-1.1.0.otapkg", 2)
    _deliver(h, "wrong-model.otapkg", 3)
    assert [s.state for s in h.transport.terminal()] == ["SUCCEEDED", "SUCCEEDED", "REJECTED"]
    root = Path(h.config.install_root) / "demo"
    assert os.readlink(root / "current") == "1.1.0"
    full = (FIXTURES / "good-full-1.1.0.otapkg").read_bytes()
    policy = Policy("dev-1", "model-a", "1.0.0", _trusted(), {}, {})
    files = verify_download(_job(full), full, policy, now=NOW, base_content=lambda a, v: None).files()
    for path, _, data in files:
        assert (root / "current" / path).read_bytes() == bytes(data), path
    logs = Path(h.config.data_dir) / "logs"
    assert "installed demo" in (logs / "demo-1.0.0-install.log").read_text()
