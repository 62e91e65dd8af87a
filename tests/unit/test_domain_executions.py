"""The execution state machine: allowed moves, sticky terminal states, stale and duplicate statuses."""

from __future__ import annotations

from dataclasses import replace

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
    full = replace(moved, transfer=transfer.ack([0, 2], 3.0)[0])
    assert from_record(Execution, to_record(full)) == full


# -- progress the device reports (URL mode shows it; issue 8) ------------------------------------------

def downloading(progress: int = 0) -> Execution:
    moved = ex.apply_status(queued(), "IN_PROGRESS", "DOWNLOADING", None, 1, 1.0, progress, 10)
    assert moved is not None
    return moved


@pytest.mark.parametrize(("before", "state", "step", "reported", "expected"), [
    (0, "IN_PROGRESS", "DOWNLOADING", 4, 4),
    (4, "IN_PROGRESS", "DOWNLOADING", 2, 4),        # never goes back
    (4, "IN_PROGRESS", "DOWNLOADING", None, 4),     # no progress field: unchanged
    (4, "IN_PROGRESS", "DOWNLOADING", 10**9, 10),   # bounded to the block count
    (4, "IN_PROGRESS", "VERIFYING", None, 10),      # verifying needs every block
    (4, "IN_PROGRESS", "INSTALLING", 3, 10),
    (4, "SUCCEEDED", None, None, 10),
    (4, "FAILED", None, 6, 6),
])
def test_reported_progress_is_bounded_and_monotonic(before, state, step, reported, expected):
    execution = downloading(before)
    assert execution.progress == before
    moved = ex.apply_status(execution, state, step, None, 2, 2.0, reported, 10)
    assert moved is not None and moved.progress == expected


def test_a_retried_attempt_starts_its_progress_again():
    requeued = replace(downloading(7), state=ex.QUEUED, step=None)
    moved = ex.apply_status(requeued, "IN_PROGRESS", "DOWNLOADING", None, 5, 3.0, 1, 10)
    assert moved is not None and moved.progress == 1


def test_a_progress_report_adds_no_timeline_entry():
    first = downloading(1)
    reports = first
    for seq, held in enumerate([2, 5, 9], start=2):
        moved = ex.apply_status(reports, "IN_PROGRESS", "DOWNLOADING", None, seq, 1.0 + seq, held, 10)
        assert moved is not None
        reports = moved
    assert reports.progress == 9 and reports.timeline == first.timeline and reports.last_seq == 4
    assert reports.last_activity == 5.0


# -- SUCCEEDED before every block was acknowledged (block mode, issue 8 item 5) ------------------------

def _succeeded(acked: list[int] | None) -> Execution:
    execution = queued()
    if acked is not None:
        transfer, _ = Transfer.start(4, 4).plan_new(0.0)
        execution = replace(execution, transfer=transfer.ack(acked, 1.0)[0])
    moved = ex.apply_status(execution, "SUCCEEDED", None, None, 1, 2.0, None, 4)
    assert moved is not None and moved.state == ex.SUCCEEDED
    return moved


@pytest.mark.parametrize(("acked", "flagged"), [
    (None, "0 of 4"),              # no block ever sent
    ([], "0 of 4"),
    ([0, 1, 3], "3 of 4"),
    ([0, 1, 2, 3], None),          # an honest success
])
def test_early_success_is_flagged(acked, flagged):
    note = ex.early_success_note(_succeeded(acked), 4)
    assert (note is None) if flagged is None else (flagged in note)


def test_early_success_stays_terminal():
    done = _succeeded(None)
    assert ex.apply_status(done, "FAILED", None, "late", 9, 3.0) is None
