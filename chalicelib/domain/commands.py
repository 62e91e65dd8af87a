"""The remote-command run state machine: what a device result or the clock does to one device's run.

QUEUED (stored, published) -> DELIVERED (the device has it but is busy with an update: it runs it when
the cloud sends it again after the update) -> RUNNING (passed every device-side check, started) ->
SUCCEEDED | FAILED | REJECTED (the device refused it: signature, expiry, target, allow-list, replay);
the cloud adds TIMED_OUT: a run not started before the command expired, or RUNNING longer than the
command's timeout plus RUNNING_GRACE (a reboot that never came back). Terminal states are sticky; a
result with an older sequence number, or one that would move a run backwards, is ignored (None). No I/O.
"""

from __future__ import annotations

from dataclasses import replace

from .models import CommandRun, TimelineEntry

QUEUED = "QUEUED"
DELIVERED = "DELIVERED"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
REJECTED = "REJECTED"
TIMED_OUT = "TIMED_OUT"
STATES = (QUEUED, DELIVERED, RUNNING, SUCCEEDED, FAILED, REJECTED, TIMED_OUT)
TERMINAL = frozenset({SUCCEEDED, FAILED, REJECTED, TIMED_OUT})
ACTIVE = frozenset({QUEUED, DELIVERED, RUNNING})
RESEND = frozenset({QUEUED, DELIVERED})  # sent again when the device's inventory arrives
RUNNING_GRACE = 300  # seconds beyond the command's timeout: a reboot, reconnecting, reporting
_RANK = {QUEUED: 0, DELIVERED: 1, RUNNING: 2}
MAX_TIMELINE = 20


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def _move(run: CommandRun, state: str, reason: str | None, now: float) -> CommandRun:
    timeline = (*run.timeline, TimelineEntry(at=now, state=state, reason=reason))[-MAX_TIMELINE:]
    return replace(run, state=state, timeline=timeline, last_activity=max(now, run.last_activity))


def apply_result(
    run: CommandRun, state: str, seq: int, now: float, *, exit_code: int | None = None, reason: str | None = None,
    output: str | None = None, truncated: bool = False,
) -> CommandRun | None:
    """A device's cmd/result; None when it must be ignored (terminal run, stale, duplicate or backwards)."""
    if is_terminal(run.state) or state not in STATES or state in (QUEUED, TIMED_OUT) or seq < run.last_seq:
        return None
    if not is_terminal(state) and _RANK[state] <= _RANK[run.state]:
        return None
    moved = replace(_move(run, state, reason, now), last_seq=seq, reason=reason)
    if state == RUNNING:
        return replace(moved, started_at=now)
    if is_terminal(state):
        return replace(moved, exit_code=exit_code, output=output, truncated=truncated)
    return moved


def overdue_reason(run: CommandRun, now: float) -> str | None:
    """Why an active run times out now, or None."""
    if run.state in RESEND and now >= run.expires_at:
        return "the command expired before the device ran it (offline or busy)"
    if run.state == RUNNING and now > (run.started_at or run.created_at) + run.timeout + RUNNING_GRACE:
        return f"no result within the command's timeout of {run.timeout} s plus {RUNNING_GRACE} s"
    return None


def time_out(run: CommandRun, now: float) -> CommandRun | None:
    reason = None if is_terminal(run.state) else overdue_reason(run, now)
    if reason is None:
        return None
    return replace(_move(run, TIMED_OUT, reason, now), reason=reason)
