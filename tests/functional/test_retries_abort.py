"""THREATS 31: bounded retries per execution (FAILED or stalled, then terminal), and a job that aborts
past its failure threshold (the rest CANCELED, devices told). Driven through the real handlers."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.schedules import sweep

from .fakes import scheduled_event, status
from .flows import publish, register_device, send

CORRUPT = "package SHA-256 does not match the job document (corrupted transfer)"


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def package(api, world, key):
    return publish(api, world, key, app="demo", version="1.1.0", size=3000)


def create(api, package, devices=("dev-1",), **extra):
    body = {"package_id": package, "targets": {"devices": list(devices)}, "block_size": 1024, "window": 4,
            "timeouts": {"stall_seconds": 60, "total_seconds": 3600}, **extra}
    answer = api.call("POST", "/jobs", body)
    assert answer.status_code == 201, answer.json
    return answer.json


def shown(api, job, epn="dev-1"):
    return api.call("GET", f"/jobs/{job['job_id']}/executions/{epn}").json


def report(world, epn, state, seq, reason=None, step=None):
    doc = world.publisher.job_documents(epn)[-1]
    send((epn, "status", status(doc.execution_id, state, step, seq, reason)), received_ms=int(world.clock.now * 1000))
    return doc


def test_failed_execution_is_retried_up_to_max_retries_then_terminal(api, world, package):
    register_device(api, "dev-1")
    job = create(api, package, max_retries=2)
    assert job["max_retries"] == 2
    first = report(world, "dev-1", "FAILED", 1, CORRUPT)
    docs = world.publisher.job_documents("dev-1")
    assert [d.execution_id for d in docs] == [first.execution_id, first.execution_id + ".r1"]
    assert docs[1].stream != first.stream
    view = shown(api, job)
    assert view["state"] == "QUEUED" and view["attempt"] == 1 and view["timeline"][-2]["state"] == "FAILED"
    assert "retry 1" in view["timeline"][-1]["reason"]
    # a late message of the earlier attempt changes nothing
    send(("dev-1", "status", status(first.execution_id, "IN_PROGRESS", "DOWNLOADING", 2)))
    assert shown(api, job)["state"] == "QUEUED"
    report(world, "dev-1", "FAILED", 3, CORRUPT)
    assert world.publisher.job_documents("dev-1")[-1].execution_id == first.execution_id + ".r2"
    report(world, "dev-1", "FAILED", 4, CORRUPT)
    assert len(world.publisher.job_documents("dev-1")) == 3  # no third retry
    assert shown(api, job)["state"] == "FAILED"
    assert api.call("GET", f"/jobs/{job['job_id']}").json["state"] == "COMPLETED"


def test_a_retry_can_succeed(api, world, package):
    register_device(api, "dev-1")
    job = create(api, package, max_retries=1)
    report(world, "dev-1", "FAILED", 1, CORRUPT)
    report(world, "dev-1", "IN_PROGRESS", 2, step="DOWNLOADING")
    report(world, "dev-1", "SUCCEEDED", 3)
    assert shown(api, job)["state"] == "SUCCEEDED"


@pytest.mark.parametrize(("state", "reason", "extra"), [
    ("FAILED", CORRUPT, {}),                                                    # default: no retries
    ("REJECTED", "bad-signature: no valid signature", {"max_retries": 3}),      # never retried
    ("FAILED", "canceled by the cloud before install", {"max_retries": 3}),    # not retryable
])
def test_outcomes_that_are_not_retried(api, world, package, state, reason, extra):
    register_device(api, "dev-1")
    job = create(api, package, **extra)
    report(world, "dev-1", state, 1, reason)
    assert len(world.publisher.job_documents("dev-1")) == 1
    assert shown(api, job)["state"] == state


def test_stalled_execution_is_retried_by_the_sweeper_then_times_out(api, world, package):
    register_device(api, "dev-1")
    job = create(api, package, max_retries=1)
    first = report(world, "dev-1", "IN_PROGRESS", 1, step="DOWNLOADING")
    world.clock.advance(61)
    result = sweep(scheduled_event(), None)
    assert result["retried"] == 1 and result["timed_out"] == 0
    assert world.publisher.cancels("dev-1") == [first.execution_id]
    assert world.publisher.job_documents("dev-1")[-1].execution_id == first.execution_id + ".r1"
    report(world, "dev-1", "IN_PROGRESS", 2, step="DOWNLOADING")
    world.clock.advance(61)
    result = sweep(scheduled_event(), None)
    assert result["timed_out"] == 1 and result["retried"] == 0
    assert world.publisher.cancels("dev-1") == [first.execution_id, first.execution_id + ".r1"]
    assert shown(api, job)["state"] == "TIMED_OUT"


def test_job_aborts_past_its_failure_threshold(api, world, package):
    epns = [f"dev-{n}" for n in range(5)]
    for epn in epns:
        register_device(api, epn)
    job = create(api, package, devices=epns, abort={"failure_threshold_percent": 60, "min_executed": 2})
    assert job["abort"] == {"failure_threshold_percent": 60, "min_executed": 2}
    report(world, "dev-0", "SUCCEEDED", 1)
    report(world, "dev-1", "FAILED", 1, "install failed: script exit 3")
    assert api.call("GET", f"/jobs/{job['job_id']}").json["state"] == "ACTIVE"  # 1 of 2 = 50 % < 60 %
    report(world, "dev-2", "IN_PROGRESS", 1, step="DOWNLOADING")
    report(world, "dev-3", "REJECTED", 1, "wrong-model: not for this model")
    summary = api.call("GET", f"/jobs/{job['job_id']}").json
    assert summary["state"] == "ABORTED"
    assert summary["counts"] == {"QUEUED": 0, "IN_PROGRESS": 0, "SUCCEEDED": 1, "FAILED": 1, "REJECTED": 1,
                                 "TIMED_OUT": 0, "CANCELED": 2, "SKIPPED": 0}
    for epn in ("dev-2", "dev-4"):
        assert world.publisher.cancels(epn) == [world.publisher.job_documents(epn)[-1].execution_id]
        assert shown(api, job, epn)["timeline"][-1]["reason"].startswith("job aborted")
    assert world.publisher.cancels("dev-0") == [] and world.publisher.cancels("dev-1") == []
    report(world, "dev-4", "SUCCEEDED", 5)  # sticky: a late result after the abort is ignored
    assert shown(api, job, "dev-4")["state"] == "CANCELED"
    world.publisher.clear()
    send(("dev-2", "status", b'{"agent_version":"1.0.0","apps":{},"model":"model-a","type":"inventory","v":1}'))
    assert world.publisher.job_documents("dev-2") == []  # an aborted job is not republished


def test_timeouts_count_towards_the_threshold(api, world, package):
    for epn in ("dev-1", "dev-2"):
        register_device(api, epn)
    job = create(api, package, devices=["dev-1", "dev-2"],
                 abort={"failure_threshold_percent": 100, "min_executed": 1})
    report(world, "dev-1", "IN_PROGRESS", 1, step="DOWNLOADING")
    world.clock.advance(61)
    result = sweep(scheduled_event(), None)
    assert result["timed_out"] == 1 and result["aborted_jobs"] == 1
    assert api.call("GET", f"/jobs/{job['job_id']}").json["counts"]["CANCELED"] == 1


def test_below_min_executed_nothing_aborts(api, world, package):
    for epn in ("dev-1", "dev-2"):
        register_device(api, epn)
    job = create(api, package, devices=["dev-1", "dev-2"])  # defaults: 50 % after 10 executed
    assert job["abort"] == {"failure_threshold_percent": 50, "min_executed": 10} and job["max_retries"] == 0
    report(world, "dev-1", "FAILED", 1, CORRUPT)
    assert api.call("GET", f"/jobs/{job['job_id']}").json["state"] == "ACTIVE"
    assert shown(api, job, "dev-2")["state"] == "QUEUED"


@pytest.mark.parametrize(("extra", "field"), [
    ({"max_retries": -1}, "max_retries"), ({"max_retries": 6}, "max_retries"), ({"max_retries": "2"}, "max_retries"),
    ({"max_retries": True}, "max_retries"), ({"abort": []}, "abort"), ({"abort": {"other": 1}}, "abort"),
    ({"abort": {"failure_threshold_percent": 0}}, "abort.failure_threshold_percent"),
    ({"abort": {"failure_threshold_percent": 101}}, "abort.failure_threshold_percent"),
    ({"abort": {"failure_threshold_percent": 50.5}}, "abort.failure_threshold_percent"),
    ({"abort": {"min_executed": 0}}, "abort.min_executed"),
    ({"abort": {"min_executed": 10**12}}, "abort.min_executed"),
])
def test_retry_and_abort_policy_is_validated(api, world, package, extra, field):
    register_device(api, "dev-1")
    answer = api.call("POST", "/jobs", {"package_id": package, "targets": {"devices": ["dev-1"]}, **extra})
    assert answer.status_code == 400 and answer.json["field"] == field, answer.json
    assert field.split(".")[-1] in answer.json["message"]
