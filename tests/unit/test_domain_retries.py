"""Bounded retries and the job failure threshold (THREATS 31): pure rules."""

from __future__ import annotations

import pytest

from chalicelib.domain import executions as ex
from chalicelib.domain import retries
from chalicelib.domain.models import Execution, Job


def job(max_retries=2, percent=50, minimum=4):
    return Job(job_id="job-1", upload_id="up-1", mode="block", block_size=256, window=4, stall_seconds=60,
               total_seconds=600, targets=("dev-1",), target_spec={"devices": ["dev-1"]}, state="ACTIVE",
               created_at=1.0, app="demo", app_version="1.1.0", package_size=1024, package_sha256="a" * 64,
               repository_key="k", block_count=4, max_retries=max_retries, abort_percent=percent,
               abort_min_executed=minimum)


def execution(attempt=0):
    return Execution(execution_id="ex-0123", job_id="job-1", epn="dev-1", state=ex.FAILED, stream=7, mode="block",
                     created_at=1.0, last_activity=2.0, attempt=attempt, started_at=1.5, last_seq=9)


@pytest.mark.parametrize(("wire", "split"), [
    ("ex-0123", ("ex-0123", 0)), ("ex-0123.r1", ("ex-0123", 1)), ("ex-0123.r12", ("ex-0123", 12)),
    ("ex-0123.r0", ("ex-0123.r0", 0)), ("ex-0123.rx", ("ex-0123.rx", 0)), (".r1", (".r1", 0)),
    ("ex-0123.r01", ("ex-0123.r01", 0)), ("ex.r1.r2", ("ex.r1", 2)),
])
def test_wire_ids(wire, split):
    assert retries.split_wire_id(wire) == split


@pytest.mark.parametrize("attempt", [0, 1, 5])
def test_wire_id_roundtrip(attempt):
    e = execution(attempt)
    assert retries.split_wire_id(retries.wire_id(e)) == (e.execution_id, attempt)
    assert (retries.wire_id(e) == e.execution_id) == (attempt == 0)


@pytest.mark.parametrize(("attempt", "max_retries", "reason", "allowed"), [
    (0, 2, "package SHA-256 does not match the job document (corrupted transfer)", True),
    (1, 2, "install failed: script exit 3", True),
    (2, 2, "install failed: script exit 3", False),       # budget used up: terminal FAILED
    (0, 0, "anything", False),                           # default: no retries
    (0, 2, "canceled by the cloud before install", False),
    (0, 2, "delta not supported by this agent", False),
    (0, 99, "x", True), (5, 99, "x", False),             # never more than MAX_RETRIES
    (0, 2, None, True),
])
def test_can_retry(attempt, max_retries, reason, allowed):
    assert retries.can_retry(execution(attempt), job(max_retries), reason) is allowed


def test_retry_starts_a_new_attempt_and_keeps_history():
    before = execution()
    after = retries.retry(before, 10.0, "download stalled", stream=99)
    assert (after.state, after.attempt, after.stream, after.transfer, after.started_at, after.step) == (
        ex.QUEUED, 1, 99, None, None, None)
    assert after.execution_id == before.execution_id and after.created_at == before.created_at
    assert after.last_seq == before.last_seq and after.last_activity == 10.0
    assert after.timeline[-1].state == ex.QUEUED and "download stalled" in after.timeline[-1].reason


@pytest.mark.parametrize(("counts", "percent", "minimum", "aborts"), [
    ({"FAILED": 2, "SUCCEEDED": 2}, 50, 4, True),
    ({"FAILED": 1, "REJECTED": 1, "TIMED_OUT": 1, "SUCCEEDED": 3}, 50, 4, True),
    ({"FAILED": 1, "SUCCEEDED": 3}, 50, 4, False),       # 25 % < 50 %
    ({"FAILED": 3}, 50, 4, False),                        # too few executed yet
    ({"FAILED": 3, "QUEUED": 10, "IN_PROGRESS": 5, "CANCELED": 4}, 50, 3, True),  # only executed ones count
    ({"SUCCEEDED": 10}, 1, 1, False),
    ({"FAILED": 1, "SUCCEEDED": 99}, 1, 10, True),
    ({}, 50, 0, False),
])
def test_abort_threshold(counts, percent, minimum, aborts):
    assert (retries.abort_reason(counts, percent, minimum) is not None) is aborts


def test_a_retry_never_reuses_the_stream_of_the_earlier_attempt():
    before = execution()
    assert retries.retry(before, 10.0, "x", stream=before.stream).stream != before.stream
