"""The golden fixtures: every file is judged exactly as tests/fixtures/expected.json says.

The cloud scan and the agent run the same table; here it goes through `otaformat.verdict.judge`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from otaformat.container import verify_package
from otaformat.delta import apply_verified_delta
from otaformat.verdict import judge, trusted_keys

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def trusted():
    return trusted_keys([(FIXTURES / "publisher.pub").read_bytes()])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_verdict_matches_expected(name, trusted):
    verdict = judge((FIXTURES / name).read_bytes(), trusted, now=NOW, model="model-a")
    want = EXPECTED[name]
    assert (verdict.accepted, verdict.code) == (want["verdict"] == "accept", want["code"]), verdict.reason
    assert (verdict.reason is None) == verdict.accepted


def test_expected_covers_every_fixture_and_every_threat_class():
    packages = {p.name for p in FIXTURES.iterdir() if p.suffix in (".otapkg", ".bin")}
    assert packages == set(EXPECTED)
    codes = {e["code"] for e in EXPECTED.values()}
    assert {"bad-signature", "untrusted-key", "unsigned", "hash", "expired", "wrong-model",
            "unsafe-archive", "bomb"} <= codes
    assert {e["verdict"] for e in EXPECTED.values()} == {"accept", "reject"}


def test_no_private_key_is_committed():
    for path in FIXTURES.iterdir():
        assert b"PRIVATE KEY" not in path.read_bytes(), path.name


def test_other_key_is_not_the_publisher():
    pub, other = (trusted_keys([(FIXTURES / n).read_bytes()]) for n in ("publisher.pub", "other.pub"))
    assert set(pub).isdisjoint(other)


def test_untrusted_fixture_verifies_with_the_other_key():
    other = trusted_keys([(FIXTURES / "other.pub").read_bytes()])
    verdict = judge((FIXTURES / "untrusted-key.otapkg").read_bytes(), other, now=NOW, model="model-a")
    assert verdict.accepted


@pytest.mark.parametrize(("model", "accepted"), [("model-a", True), ("model-b", False), (None, True)])
def test_model_policy_on_the_good_package(trusted, model, accepted):
    verdict = judge((FIXTURES / "good-full-1.0.0.otapkg").read_bytes(), trusted, now=NOW, model=model)
    assert verdict.accepted is accepted


def test_good_delta_rebuilds_1_1_0_from_1_0_0(trusted):
    base = verify_package((FIXTURES / "good-full-1.0.0.otapkg").read_bytes(), trusted)
    target = verify_package((FIXTURES / "good-full-1.1.0.otapkg").read_bytes(), trusted)
    delta = verify_package((FIXTURES / "good-delta-1.0.0-to-1.1.0.otapkg").read_bytes(), trusted)
    assert apply_verified_delta(delta.manifest, base.content, delta.content) == target.content
    verdict = judge((FIXTURES / "good-delta-1.0.0-to-1.1.0.otapkg").read_bytes(), trusted, now=NOW,
                    model="model-a", base_content=base.content)
    assert verdict.accepted and verdict.content == target.content


def test_good_delta_on_the_wrong_base_is_rejected(trusted):
    wrong = verify_package((FIXTURES / "good-full-1.1.0.otapkg").read_bytes(), trusted)
    verdict = judge((FIXTURES / "good-delta-1.0.0-to-1.1.0.otapkg").read_bytes(), trusted, now=NOW,
                    model="model-a", base_content=wrong.content)
    assert (verdict.accepted, verdict.code) == (False, "base-mismatch")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"version_floor": "1.1.0"}, "downgrade"),
        ({"agent_version": "0.9.0"}, "agent-too-old"),
        ({"now": datetime(2036, 1, 1, tzinfo=UTC)}, "expired"),
    ],
)
def test_judge_applies_device_policy(trusted, kwargs, code):
    args = {"now": NOW, "model": "model-a", **kwargs}
    verdict = judge((FIXTURES / "good-full-1.0.0.otapkg").read_bytes(), trusted, **args)
    assert (verdict.accepted, verdict.code) == (False, code)
