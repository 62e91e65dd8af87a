"""POST /jobs?dry_run=true: a cost estimate, validated like a creation, and nothing created or sent."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib import prices
from chalicelib.domain import pricing

from .flows import publish, register_device


@pytest.fixture
def package(api, world):
    return publish(api, world, ec.generate_private_key(ec.SECP256R1()), app="demo", version="1.1.0", size=100_000)


def job_body(package, **changes):
    body = {"package_id": package, "targets": {"devices": ["dev-1", "dev-2"]}, "block_size": 4096, "window": 16}
    body.update(changes)
    return body


def nothing_created(api, world):
    assert api.call("GET", "/jobs").json["jobs"] == []
    assert world.publisher.job_documents("dev-1") == [] and world.publisher.job_documents("dev-2") == []


def test_dry_run_answers_the_estimate_and_creates_nothing(api, world, package):
    for epn in ("dev-1", "dev-2"):
        register_device(api, epn)
    answer = api.call("POST", "/jobs?dry_run=true&loss=0.1", job_body(package))
    assert answer.status_code == 200, answer.json
    estimate = answer.json
    nothing_created(api, world)
    size = api.call("GET", f"/packages/{package}").json["size"]
    assert estimate["created"] is False and estimate["prices"]["table"] == prices.DEFAULT
    assert estimate["prices"]["date"] and estimate["prices"]["sources"]["iot_core"].startswith("https://")
    rollout = estimate["rollout"]
    assert (rollout["package_size"], rollout["targets"], rollout["loss"]) == (size, 2, 0.1)
    blocks = -(-size // 4096)
    assert estimate["counts"]["blocks"] == 2 * blocks
    assert estimate["counts"]["resends"] == 2 * -(-blocks * 0.1 // 0.9)
    assert estimate["total"] == pytest.approx(sum(line["cost"] for line in estimate["lines"]), abs=1e-5)
    expected = pricing.estimate(pricing.RolloutSpec(**rollout), prices.load())
    assert estimate["total"] == pytest.approx(expected.total, rel=1e-6)
    assert estimate["comparison"]["total"] > 0


def test_dry_run_false_creates_as_usual(api, world, package):
    register_device(api, "dev-1")
    answer = api.call("POST", "/jobs?dry_run=false", job_body(package, targets={"devices": ["dev-1"]}))
    assert answer.status_code == 201, answer.json


@pytest.mark.parametrize(("query", "change", "status", "field"), [
    ("dry_run=true", {"block_size": 255}, 400, "block_size"),
    ("dry_run=true", {"window": 0}, 400, "window"),
    ("dry_run=true", {"surprise": 1}, 400, "surprise"),
    ("dry_run=true", {"targets": {"devices": ["ghost"]}}, 404, "targets.devices"),
    ("dry_run=true", {"targets": {"model": "model-z"}}, 409, "targets.model"),
    ("dry_run=true", {"package_id": "up-missing"}, 404, "package_id"),
    ("dry_run=yes", {}, 400, "dry_run"),
    ("dry_run=true&loss=0.9", {}, 400, "loss"),
    ("dry_run=true&loss=nan", {}, 400, "loss"),
    ("dry_run=true&loss=-0.1", {}, 400, "loss"),
    ("dry_run=true&prices=aws-mars-1999-01", {}, 400, "prices"),
    ("dry_run=true&prices=../../etc", {}, 400, "prices"),
])
def test_dry_run_rejects_what_creation_rejects(api, world, package, query, change, status, field):
    for epn in ("dev-1", "dev-2"):
        register_device(api, epn)
    answer = api.call("POST", f"/jobs?{query}", job_body(package, **change))
    assert answer.status_code == status, answer.json
    assert field in answer.json["message"]
    nothing_created(api, world)


def test_dry_run_refuses_a_body_that_is_not_an_object(api, world, package):
    answer = api.call("POST", "/jobs?dry_run=true", raw=b"[1]")
    assert answer.status_code == 400, answer.json
    nothing_created(api, world)
