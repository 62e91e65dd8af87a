"""Stopping executions: cancel a set of executions (operator cancel, job abort) and the job-level
failure threshold that aborts a job (THREATS 31).

Every change is a conditional write with retries; terminal executions are never touched (sticky),
and each execution that really moved gets one Cancel on `ota/<epn>/job` naming its current attempt
(except a WAITING one of a staged job: it was never sent). A staged job's threshold is evaluated per
wave (domain/waves.abort_reason over each started wave's counters).
Does not: retry executions (domain/retries.py and the callers do) or send blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from otaformat import messages, topics

from ..domain import executions as ex
from ..domain import waves
from ..domain.errors import InvalidInput
from ..domain.models import Execution, Job, bumped
from ..domain.ports import Publisher, Repository
from ..domain.retries import MAX_RETRIES, abort_reason, wire_id
from . import groups
from .common import integer, retrying
from .fanout import progress

log = logging.getLogger(__name__)
ABORTED = "ABORTED"


def cancel_executions(
    repo: Repository, publisher: Publisher, executions: Iterable[Execution], now: float, reason: str
) -> int:
    """Cancel every unfinished execution among `executions` and tell its device; returns how many moved."""
    moved_count = 0
    for execution in executions:
        if ex.is_terminal(execution.state):
            continue

        def stop(execution_id: str = execution.execution_id) -> tuple[Execution, bool] | None:
            current = repo.get_execution(execution_id)
            moved = current and ex.cancel(current, now, reason)
            if not current or not moved:
                return None
            saved = bumped(moved)
            repo.save_execution(saved)
            return saved, current.state != ex.WAITING

        outcome = retrying(stop)
        if outcome is not None:
            saved, was_sent = outcome
            moved_count += 1
            if was_sent:
                publisher.publish(topics.topic(saved.epn, "job"), messages.encode(messages.Cancel(wire_id(saved))))
    return moved_count


def check_abort(repo: Repository, publisher: Publisher, job_id: str, now: float) -> bool:
    """Abort the job if its failures crossed the threshold: job ABORTED, the rest CANCELED. Idempotent."""
    job = repo.get_job(job_id)
    if job is None or job.state != "ACTIVE":
        return False
    if waves.staged(job):  # per wave: the started waves' counters
        counted = repo.wave_counts(job_id, 0, job.current_wave + 1)
        reason = next((r for w, c in counted.items() if (r := waves.abort_reason(job, w, c))), None)
    else:
        counts = progress(repo, job)["counts"]  # the job's counters: no execution is read unless it aborts
        reason = abort_reason(counts, job.abort_percent, job.abort_min_executed)
    if reason is None:
        return False

    def mark() -> Job | None:
        current = repo.get_job(job_id)
        if current is None or current.state != "ACTIVE":
            return None
        aborted = bumped(current, state=ABORTED)
        repo.save_job(aborted)
        return aborted

    if retrying(mark) is None:
        return False
    canceled = cancel_executions(repo, publisher, repo.list_job_executions(job_id), now, f"job aborted: {reason}")
    groups.expire(repo, job_id, now)
    log.warning("job aborted past its failure threshold", extra={"job_id": job_id, "reason": reason,
                                                                  "canceled": canceled})
    return True


DEFAULT_ABORT_PERCENT = 50
DEFAULT_ABORT_MIN_EXECUTED = 10


def normalise_policy(body: dict[str, Any]) -> dict[str, Any]:
    """The job body's retry and abort policy, validated, with defaults filled in."""
    retries = integer(body, "max_retries", 0, MAX_RETRIES, 0)
    abort = body.get("abort", {})
    if not isinstance(abort, dict) or not set(abort) <= {"failure_threshold_percent", "min_executed"}:
        raise InvalidInput("field 'abort' must be {\"failure_threshold_percent\": 1..100, \"min_executed\": n}",
                           field="abort")
    percent = integer(abort, "failure_threshold_percent", 1, 100, DEFAULT_ABORT_PERCENT, parent="abort")
    minimum = integer(abort, "min_executed", 1, 100_000, DEFAULT_ABORT_MIN_EXECUTED, parent="abort")
    return {"max_retries": retries, "abort": {"failure_threshold_percent": percent, "min_executed": minimum}}


def policy_view(job: Job) -> dict[str, Any]:
    return {"max_retries": job.max_retries,
            "abort": {"failure_threshold_percent": job.abort_percent, "min_executed": job.abort_min_executed}}
