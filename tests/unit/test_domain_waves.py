"""Staged rollouts, the pure rules (domain/waves.py) and the WAITING state (domain/executions.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.domain import executions as ex
from chalicelib.domain import group as group_rules
from chalicelib.domain import waves
from chalicelib.domain.models import Execution, Job, Package
from otaformat import topics


def job(**changes) -> Job:
    base = Job(job_id="job-1", upload_id="up-1", mode="block", block_size=256, window=8, stall_seconds=60,
               total_seconds=600, targets=(), target_spec={"model": "m1"}, state="ACTIVE", created_at=0.0, app="demo",
               app_version="1.0.0", package_size=256, package_sha256="a" * 64, repository_key="k", block_count=1,
               abort_percent=50, abort_min_executed=10, wave_size=3, wave_gate="pause", current_wave=0,
               wave_started_at=100.0)
    return replace(base, **changes)


def execution(state=ex.WAITING, **changes) -> Execution:
    base = Execution(execution_id="ex-1", job_id="job-1", epn="dev-1", state=state, stream=5, mode="block",
                     created_at=0.0, last_activity=0.0)
    return replace(base, **changes)


@pytest.mark.parametrize(("size", "ordinal", "wave"), [
    (3, 0, 0), (3, 2, 0), (3, 3, 1), (3, 8, 2), (1, 5, 5),
    (1, 999, 999), (1, 1000, 999), (1, 5000, 999),  # the last wave takes every remaining target
    (0, 7, None),  # a percent job before its fan-out is done: not known yet
])
def test_wave_of_an_ordinal(size, ordinal, wave):
    assert waves.wave_of(job(wave_size=size), ordinal) == wave


@pytest.mark.parametrize(("percent", "eligible", "size", "count"), [
    (10, 100, 10, 10), (10, 95, 10, 10), (10, 101, 11, 10), (33, 10, 4, 3), (100, 7, 7, 1),
    (1, 5, 1, 5),  # at least one device per wave
    (50, 0, 1, 0), (1, 10_000, 100, 100),
])
def test_percent_waves_are_sized_when_the_targets_are_counted(percent, eligible, size, count):
    assert waves.percent_size(percent, eligible) == size
    assert waves.wave_count(size, eligible) == count


@pytest.mark.parametrize(("size", "wave", "expected"), [
    (3, 0, (0, 3)), (3, 2, (6, 9)), (1, 999, (999, waves.NO_END)), (10, 998, (9980, 9990)),
])
def test_bounds_of_a_wave(size, wave, expected):
    assert waves.bounds(job(wave_size=size), wave) == expected


@pytest.mark.parametrize(("current", "wave", "released"), [
    (-1, 0, False), (0, 0, True), (0, 1, False), (2, 1, True), (2, None, False),
])
def test_released_waves(current, wave, released):
    assert waves.released(job(current_wave=current), wave) is released


@pytest.mark.parametrize(("case", "changes", "has_next"), [
    ("counting", {"waves_total": 0}, None),
    ("more to come", {"waves_total": 3, "current_wave": 1}, True),
    ("last", {"waves_total": 3, "current_wave": 2}, False),
    ("the cap", {"waves_total": 0, "current_wave": waves.MAX_WAVES - 1}, False),
])
def test_is_there_a_next_wave(case, changes, has_next):
    assert waves.has_next(job(**changes)) is has_next, case


DONE = {"SUCCEEDED": 3}
RUNNING = {"SUCCEEDED": 2, "IN_PROGRESS": 1}
FAILING = {"FAILED": 2, "SUCCEEDED": 1}  # 2 of 3 executed failed: a wave of 3 counts whole (min_executed 10)
S = waves.Step


@pytest.mark.parametrize(("case", "changes", "counts", "complete", "following", "now", "step"), [
    ("pause 0: finished, start", {}, DONE, True, True, 101.0, S.START),
    ("pause: still running", {}, RUNNING, True, True, 500.0, S.WAIT),
    ("pause: members still being created", {}, DONE, False, True, 500.0, S.WAIT),
    ("pause: no next wave", {}, DONE, True, False, 500.0, S.WAIT),
    ("pause 60: first seen finished", {"wave_delay": 60}, DONE, True, True, 200.0, S.MARK_FINISHED),
    ("pause 60: too early", {"wave_delay": 60, "wave_finished_at": 200.0}, DONE, True, True, 259.0, S.WAIT),
    ("pause 60: due", {"wave_delay": 60, "wave_finished_at": 200.0}, DONE, True, True, 260.0, S.START),
    ("interval: too early", {"wave_gate": "interval", "wave_delay": 30}, RUNNING, False, True, 129.0, S.WAIT),
    ("interval: due though running", {"wave_gate": "interval", "wave_delay": 30}, RUNNING, False, True, 130.0,
     S.START),
    ("interval: no next wave", {"wave_gate": "interval", "wave_delay": 30}, RUNNING, True, False, 500.0, S.WAIT),
    ("failures abort (pause)", {}, FAILING, True, True, 500.0, S.ABORT),
    ("failures abort (interval)", {"wave_gate": "interval", "wave_delay": 30}, FAILING, True, True, 500.0, S.ABORT),
    ("failures abort the last wave too", {}, FAILING, True, False, 500.0, S.ABORT),
    ("skipped are no failures", {}, {"SUCCEEDED": 3}, True, True, 101.0, S.START),
    ("no wave started yet", {"current_wave": -1}, {}, False, True, 500.0, S.WAIT),
    ("not active", {"state": "CANCELED"}, DONE, True, True, 500.0, S.WAIT),
])
def test_next_step(case, changes, counts, complete, following, now, step):
    assert waves.next_step(job(**changes), counts, complete, following, now) is step, case


@pytest.mark.parametrize(("case", "changes", "counts", "aborts"), [
    ("a wave smaller than min_executed counts whole", {}, {"FAILED": 2, "SUCCEEDED": 1}, True),
    ("too few of it executed yet", {}, {"FAILED": 1, "IN_PROGRESS": 2}, False),  # min_executed capped at 3
    ("below the rate", {"abort_percent": 70}, {"FAILED": 2, "SUCCEEDED": 1}, False),
    ("big wave: min_executed applies", {}, {"FAILED": 5, "QUEUED": 95}, False),
    ("big wave past min_executed", {}, {"FAILED": 6, "SUCCEEDED": 4, "QUEUED": 90}, True),
    ("canceled and waiting never count", {}, {"CANCELED": 5, "WAITING": 3, "SUCCEEDED": 2}, False),
])
def test_the_threshold_counts_per_wave(case, changes, counts, aborts):
    reason = waves.abort_reason(job(**changes), 4, counts)
    assert (reason is not None) is aborts, case
    assert reason is None or reason.startswith("wave 4: ")


@pytest.mark.parametrize(("before", "after", "moves"), [
    (None, (ex.WAITING, 2), {2: {ex.WAITING: 1}}),
    (None, (ex.WAITING, None), {}),  # a percent job's waiting execution: no wave yet
    ((ex.WAITING, None), (ex.QUEUED, 0), {0: {ex.QUEUED: 1}}),
    ((ex.WAITING, 1), (ex.QUEUED, 1), {1: {ex.WAITING: -1, ex.QUEUED: 1}}),
    ((ex.QUEUED, 1), (ex.QUEUED, 1), {}),
    ((ex.IN_PROGRESS, 1), (ex.FAILED, 1), {1: {ex.IN_PROGRESS: -1, ex.FAILED: 1}}),
    ((ex.QUEUED, None), (ex.SUCCEEDED, None), {}),  # not staged
])
def test_counter_moves(before, after, moves):
    assert waves.counter_moves(before, after) == moves


def test_a_waiting_execution_is_never_sent_timed_out_or_moved_by_a_device():
    waiting = execution(created_at=0.0, last_activity=0.0)
    assert ex.overdue_reason(waiting, 10_000.0, 60, 600) is None
    assert ex.apply_status(waiting, ex.IN_PROGRESS, "DOWNLOADING", None, 1, 5.0) is None
    assert ex.apply_status(waiting, ex.SUCCEEDED, None, None, 1, 5.0) is None
    assert ex.cancel(waiting, 5.0).state == ex.CANCELED  # cancel and abort still end it
    assert ex.release(execution(ex.QUEUED), 5.0, 1) is None and ex.release(execution(ex.SKIPPED), 5.0, 1) is None


def test_a_released_execution_times_from_its_wave_start():
    released = ex.release(execution(created_at=0.0, last_activity=0.0), 5000.0, 2)
    assert released is not None and released.state == ex.QUEUED and released.wave == 2
    assert released.released_at == 5000.0 and released.timeline[-1].reason == "wave 2 started"
    assert ex.overdue_reason(released, 5500.0, 60, 600) is None  # 500 s after its wave started, not 5500
    assert "total timeout" in (ex.overdue_reason(released, 5601.0, 60, 600) or "")
    assert ex.apply_status(released, ex.IN_PROGRESS, "DOWNLOADING", None, 1, 5001.0) is not None


@pytest.mark.parametrize(("wave", "topic", "group_id"), [
    (None, "ota/g/m1/job-0123456789abcdef0123/blk", "job-0123456789abcdef0123.m1"),
    (0, "ota/g/m1/job-0123456789abcdef0123-w0/blk", "job-0123456789abcdef0123.m1.w0"),
    (999, "ota/g/m1/job-0123456789abcdef0123-w999/blk", "job-0123456789abcdef0123.m1.w999"),
])
def test_each_wave_has_its_own_group_on_the_same_topic_levels(wave, topic, group_id):
    j = job(job_id="job-0123456789abcdef0123")
    package = Package(upload_id="up-1", state="AVAILABLE", declared_size=1, created_at=0.0, models=("m1",))
    offered = group_rules.offered(j, package, execution(ex.QUEUED, wave=wave))
    assert offered is not None and offered.topic == topic
    assert topics.parse_group_topic(topic) is not None  # five levels: the brokers' ACL for ota/g/m1/+/blk holds
    made = group_rules.new_group(j, "m1", 0.0, wave)
    assert made.group_id == group_id and made.wave == wave and made.stream == offered.stream
    others = {group_rules.group_stream(j.job_id, "m1", w) for w in (None, 0, 1, 2)}
    assert len(others) == 4  # waves do not share a stream
