"""The execution state machine: what a device status, a cancel or a timeout does to one execution.

States: QUEUED -> IN_PROGRESS (steps DOWNLOADING, VERIFYING, INSTALLING) -> SUCCEEDED | FAILED |
REJECTED; the cloud adds TIMED_OUT and CANCELED. Terminal states are sticky: every function here
returns None ("ignore, log it") for anything arriving after one, and for stale or duplicated status
messages (sequence number older, or same sequence and same state/step). No I/O.
"""

from __future__ import annotations

from dataclasses import replace

from .models import Execution, TimelineEntry

QUEUED = "QUEUED"
IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
REJECTED = "REJECTED"
TIMED_OUT = "TIMED_OUT"
CANCELED = "CANCELED"
STATES = (QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED)
TERMINAL = frozenset({SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED})
ACTIVE = frozenset({QUEUED, IN_PROGRESS})
MAX_TIMELINE = 50


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def _move(execution: Execution, state: str, step: str | None, reason: str | None, now: float) -> Execution:
    entry = TimelineEntry(at=now, state=state, step=step, reason=reason)
    timeline = (*execution.timeline, entry)[-MAX_TIMELINE:]
    return replace(execution, state=state, step=step if state == IN_PROGRESS else None, timeline=timeline,
                   last_activity=now)


def apply_status(
    execution: Execution, state: str, step: str | None, reason: str | None, seq: int, now: float
) -> Execution | None:
    """A device status message; None when it must be ignored (terminal, stale or duplicate)."""
    if is_terminal(execution.state) or state not in (IN_PROGRESS, SUCCEEDED, FAILED, REJECTED):
        return None
    if seq < execution.last_seq:
        return None
    if seq == execution.last_seq and state == execution.state and step == execution.step:
        return None
    moved = _move(execution, state, step, reason, now)
    started = execution.started_at
    if state == IN_PROGRESS and started is None:
        started = now
    return replace(moved, last_seq=seq, started_at=started)


def cancel(execution: Execution, now: float, reason: str = "canceled by operator") -> Execution | None:
    if is_terminal(execution.state):
        return None
    return _move(execution, CANCELED, None, reason, now)


def time_out(execution: Execution, now: float, reason: str) -> Execution | None:
    if is_terminal(execution.state):
        return None
    return _move(execution, TIMED_OUT, None, reason, now)


def touch(execution: Execution, now: float) -> Execution:
    """Record device activity (acks, requests) without a state change."""
    return replace(execution, last_activity=max(now, execution.last_activity))


def overdue_reason(execution: Execution, now: float, stall_seconds: int, total_seconds: int) -> str | None:
    """Why an active execution must time out now, or None."""
    if is_terminal(execution.state):
        return None
    if total_seconds and now - execution.created_at > total_seconds:
        return f"no result within the job's total timeout of {total_seconds} s"
    active = execution.state == IN_PROGRESS or execution.started_at is not None
    if active and stall_seconds and now - execution.last_activity > stall_seconds:
        return f"device silent for more than {stall_seconds} s (stall timeout)"
    return None
