"""The execution state machine: allowed moves, sticky terminal states, stale and duplicate statuses."""

from __future__ import annotations

import pytest

from chalicelib.domain import executions as ex
from chalicelib.domain.models import Execution, from_record, to_record
from chalicelib.domain.window import Transfer


def queued() -> Execution:
    return Execution(execution_id="ex-1", job_id="job-1", epn="dev-1", state=ex.QUEUED, stream=7, mode="block",
                     created_at=0.0, last_activity=0.0)


@pytest.mark.parametrize(("state", "step"), [("IN_PROGRESS", "DOWNLOADING"), ("SUCCEEDED", None), ("FAILED", None),
                                             ("REJECTED", None)])
def test_queued_accepts_device_states(state, step):
    moved = ex.apply_status(queued(), state, step, "why", 1, 5.0)
    assert moved is not None and moved.state == state and moved.timeline[-1].reason == "why"


@pytest.mark.parametrize("terminal", sorted(ex.TERMINAL))
def test_terminal_states_are_sticky(terminal):
    done = Execution(**{**to_record(queued()), "state": terminal, "timeline": ()})
    assert ex.apply_status(done, "IN_PROGRESS", "DOWNLOADING", None, 99, 1.0) is None
    assert ex.cancel(done, 1.0) is None
    assert ex.time_out(done, 1.0, "late") is None


@pytest.mark.parametrize(("first", "second", "applies"), [
    ((2, "IN_PROGRESS", "INSTALLING"), (1, "IN_PROGRESS", "DOWNLOADING"), False),  # stale
    ((2, "IN_PROGRESS", "INSTALLING"), (2, "IN_PROGRESS", "INSTALLING"), False),  # duplicate
    ((2, "IN_PROGRESS", "VERIFYING"), (2, "IN_PROGRESS", "INSTALLING"), True),   # same seq, new step
    ((0, "IN_PROGRESS", "DOWNLOADING"), (0, "SUCCEEDED", None), True),          # agents without seq
])
def test_sequence_numbers(first, second, applies):
    one = ex.apply_status(queued(), first[1], first[2], None, first[0], 1.0)
    assert one is not None
    assert (ex.apply_status(one, second[1], second[2], None, second[0], 2.0) is not None) is applies


@pytest.mark.parametrize(("state", "started", "now", "expected"), [
    (ex.QUEUED, None, 50.0, None),
    (ex.QUEUED, None, 4000.0, "total"),
    (ex.IN_PROGRESS, 1.0, 100.0, "stall"),
    (ex.QUEUED, 1.0, 100.0, "stall"),
    (ex.IN_PROGRESS, 1.0, 30.0, None),
])
def test_overdue_reasons(state, started, now, expected):
    execution = Execution(**{**to_record(queued()), "state": state, "started_at": started, "timeline": ()})
    reason = ex.overdue_reason(execution, now, stall_seconds=60, total_seconds=3600)
    assert (reason is None) if expected is None else (expected in reason)


def test_records_roundtrip_with_transfer_and_timeline():
    transfer, _ = Transfer.start(20, 4).plan_new(1.0)
    moved = ex.apply_status(queued(), "IN_PROGRESS", "DOWNLOADING", None, 1, 2.0)
    assert moved is not None
    from dataclasses import replace
    full = replace(moved, transfer=transfer.ack([0, 2], 3.0)[0])
    assert from_record(Execution, to_record(full)) == full
