"""The execution state machine: what a device status, a cancel or a timeout does to one execution.

States: QUEUED -> IN_PROGRESS (steps DOWNLOADING, VERIFYING, INSTALLING) -> SUCCEEDED | FAILED |
REJECTED; the cloud adds TIMED_OUT and CANCELED, and SKIPPED (terminal from the start: a target
the job's fan-out found ineligible, its reason in the timeline; never sent, never a failure).
A staged job (domain/waves.py) creates the executions of a wave not started yet as WAITING: not
terminal, never sent, ignored by device messages and timers, and moved to QUEUED (only) when its wave
starts; from then on its timers count from `released_at`.
Terminal states are sticky: every function here returns None ("ignore, log it") for anything arriving
after one, and for stale or duplicated status messages (sequence number older, or same sequence and
same state/step).

Progress the device reports (status `progress`, blocks held) is kept in `Execution.progress`: bounded
to the block count, never decreasing within an attempt (a retry, back in QUEUED, starts again from 0),
and the whole package once the device verifies, installs or succeeds (it cannot do so without holding
every block). A newer status repeating the current IN_PROGRESS step is a progress report: it updates
`last_seq` and `progress` without a timeline entry. In block mode the cloud does not need the device's
word: progress is what was sent and acknowledged (domain/window.py), and a SUCCEEDED that arrives before
every block was acknowledged is recorded (terminal, sticky) with a `note` saying so (`early_success_note`).
No I/O.
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
SKIPPED = "SKIPPED"
WAITING = "WAITING"
STATES = (WAITING, QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED, SKIPPED)
TERMINAL = frozenset({SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED, SKIPPED})
ACTIVE = frozenset({QUEUED, IN_PROGRESS})  # sent and running: the sweeper's work list
UNFINISHED = frozenset({WAITING, *ACTIVE})
MAX_TIMELINE = 50


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def _move(execution: Execution, state: str, step: str | None, reason: str | None, now: float) -> Execution:
    entry = TimelineEntry(at=now, state=state, step=step, reason=reason)
    timeline = (*execution.timeline, entry)[-MAX_TIMELINE:]
    return replace(execution, state=state, step=step if state == IN_PROGRESS else None, timeline=timeline,
                   last_activity=now)


HOLDS_EVERYTHING = ("VERIFYING", "INSTALLING")  # IN_PROGRESS steps a device reaches only with every block


def reported_progress(
    execution: Execution, state: str, step: str | None, progress: int | None, block_count: int
) -> int:
    """Blocks held by the device after this status: its `progress` bounded to [0, block_count], never
    below what it reported before in this attempt; all of them once it verifies, installs or succeeds."""
    before = 0 if execution.state == QUEUED else execution.progress
    holds_all = state == SUCCEEDED or (state == IN_PROGRESS and step in HOLDS_EVERYTHING)
    claimed = block_count if holds_all else progress or 0
    return max(before, min(block_count, max(0, claimed)))


def apply_status(
    execution: Execution, state: str, step: str | None, reason: str | None, seq: int, now: float,
    progress: int | None = None, block_count: int = 0,
) -> Execution | None:
    """A device status message; None when it must be ignored (terminal, never sent, stale or duplicate)."""
    if execution.state not in ACTIVE or state not in (IN_PROGRESS, SUCCEEDED, FAILED, REJECTED):
        return None
    if seq < execution.last_seq:
        return None
    if seq == execution.last_seq and state == execution.state and step == execution.step:
        return None
    held = reported_progress(execution, state, step, progress, block_count)
    if state == IN_PROGRESS and execution.state == IN_PROGRESS and step == execution.step:
        return replace(touch(execution, now), last_seq=seq, progress=held)  # a progress report
    moved = _move(execution, state, step, reason, now)
    started = execution.started_at
    if state == IN_PROGRESS and started is None:
        started = now
    return replace(moved, last_seq=seq, started_at=started, progress=held)


def early_success_note(execution: Execution, block_count: int) -> str | None:
    """Block mode: why a SUCCEEDED execution is flagged (the device claimed success before acknowledging
    every block the cloud sent), or None when every block was sent and acknowledged."""
    transfer = execution.transfer
    acked = transfer.acked_count if transfer is not None else 0
    if execution.state != SUCCEEDED or acked >= block_count:
        return None
    return (f"device reported SUCCEEDED with {acked} of {block_count} blocks acknowledged; "
            "progress shows only acknowledged blocks")


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
    """Why an active execution must time out now, or None (never for a WAITING one: its wave has not
    started; the total timeout counts from when it did)."""
    if execution.state not in ACTIVE:
        return None
    if total_seconds and now - (execution.released_at or execution.created_at) > total_seconds:
        return f"no result within the job's total timeout of {total_seconds} s"
    active = execution.state == IN_PROGRESS or execution.started_at is not None
    if active and stall_seconds and now - execution.last_activity > stall_seconds:
        return f"device silent for more than {stall_seconds} s (stall timeout)"
    return None


def release(execution: Execution, now: float, wave: int) -> Execution | None:
    """A WAITING execution whose wave started: QUEUED, its timers counting from now; None otherwise."""
    if execution.state != WAITING:
        return None
    moved = _move(execution, QUEUED, None, f"wave {wave} started", now)
    return replace(moved, wave=wave, released_at=now)
