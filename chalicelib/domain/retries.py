"""Bounded retries of one execution and the job's failure threshold (THREATS 31). Pure, no I/O.

A retry keeps the execution (same stored id, same timeline, same total-timeout budget) and starts a
new *attempt*: a fresh stream and a wire execution id `<execution_id>.r<attempt>` in the republished
job document, so the agent (which remembers finished execution ids and repeats their outcome) treats
it as a new job, and frames, acks and statuses of the earlier attempt are recognised and ignored.
Terminal states stay sticky: a retry replaces the FAILED/TIMED_OUT outcome before it is stored.

Does not: publish, store, or decide job-level policy beyond the threshold arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from otaformat import wire

from .executions import FAILED, MAX_TIMELINE, QUEUED, REJECTED, TIMED_OUT
from .models import Execution, Job, TimelineEntry

MAX_RETRIES = 5
FAILURES = frozenset({FAILED, REJECTED, TIMED_OUT})
EXECUTED = frozenset({*FAILURES, "SUCCEEDED"})
# FAILED reasons a retry cannot fix: the device or the operator gave up on purpose, or lacks a feature.
NOT_RETRYABLE = ("canceled", "not supported", "not kept on this device")
_WIRE = re.compile(r"^(?P<base>.+)\.r(?P<attempt>[1-9][0-9]{0,2})$")


def wire_id(execution: Execution) -> str:
    """The execution id the device sees for the current attempt."""
    return execution.execution_id if execution.attempt == 0 else f"{execution.execution_id}.r{execution.attempt}"


def split_wire_id(value: str) -> tuple[str, int]:
    """(stored execution id, attempt) of an execution id received from a device."""
    match = _WIRE.fullmatch(value)
    if match is None:
        return value, 0
    return match["base"], int(match["attempt"])


def retryable(reason: str | None) -> bool:
    text = (reason or "").lower()
    return not any(marker in text for marker in NOT_RETRYABLE)


def can_retry(execution: Execution, job: Job, reason: str | None) -> bool:
    """May this FAILED (or stall-timed-out) attempt be retried under the job's budget?"""
    return execution.attempt < min(job.max_retries, MAX_RETRIES) and retryable(reason)


def retry(execution: Execution, now: float, reason: str | None, stream: int) -> Execution:
    """The execution queued again as its next attempt (caller republishes the job document)."""
    attempt = execution.attempt + 1
    if stream == execution.stream:  # frames of the earlier attempt must never match the new one
        stream = (stream + 1) % (wire.MAX_STREAM + 1)
    entry = TimelineEntry(at=now, state=QUEUED, step=None, reason=f"retry {attempt} after: {reason or 'failure'}")
    return replace(execution, state=QUEUED, step=None, attempt=attempt, stream=stream, transfer=None,
                   started_at=None, last_activity=now, timeline=(*execution.timeline, entry)[-MAX_TIMELINE:])


def abort_reason(counts: Mapping[str, int], percent: int, min_executed: int) -> str | None:
    """Why the job must abort: failed+rejected+timed out >= percent of executed, executed >= min_executed."""
    executed = sum(counts.get(s, 0) for s in EXECUTED)
    failed = sum(counts.get(s, 0) for s in FAILURES)
    if executed < max(1, min_executed) or failed * 100 < percent * executed:
        return None
    return f"{failed} of {executed} executed executions failed (threshold {percent}% after {min_executed})"
