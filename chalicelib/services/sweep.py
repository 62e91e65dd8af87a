"""The scheduled sweeper: times out silent executions, resends overdue blocks, completes finished jobs.

Runs from a schedule (EventBridge on AWS, the local bridge's timer locally). Every change is a
conditional write, so two sweeps running at once cannot double count or resurrect a terminal state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from otaformat import messages, topics

from ..domain import executions as ex
from ..domain.models import Execution, Job, bumped
from ..domain.ports import Publisher, Repository, Storage
from .common import retrying
from .delivery import ACK_TIMEOUT_SECONDS, send_blocks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    timed_out: int = 0
    resent_blocks: int = 0
    completed_jobs: int = 0


def sweep(
    repo: Repository, storage: Storage, publisher: Publisher, now: float, ack_timeout: float = ACK_TIMEOUT_SECONDS
) -> SweepResult:
    timed_out = resent = completed = 0
    for job in repo.list_jobs():
        if job.state != "ACTIVE":
            continue
        executions = repo.list_job_executions(job.job_id)
        for execution in executions:
            if ex.is_terminal(execution.state):
                continue
            outcome = retrying(lambda j=job, eid=execution.execution_id: _sweep_one(repo, j, eid, now, ack_timeout))
            if outcome is None:
                continue
            saved, kind, blocks = outcome
            if kind == "timeout":
                timed_out += 1
                publisher.publish(topics.topic(saved.epn, "job"), messages.encode(messages.Cancel(saved.execution_id)))
            elif blocks:
                resent += send_blocks(publisher, storage, job, saved, blocks)
        finished = executions and all(ex.is_terminal(e.state) for e in repo.list_job_executions(job.job_id))
        if finished and retrying(lambda jid=job.job_id: _complete(repo, jid)):
            completed += 1
    publisher.flush()
    return SweepResult(timed_out, resent, completed)


def _sweep_one(
    repo: Repository, job: Job, execution_id: str, now: float, ack_timeout: float
) -> tuple[Execution, str, list[int]] | None:
    execution = repo.get_execution(execution_id)
    if execution is None or ex.is_terminal(execution.state):
        return None
    reason = ex.overdue_reason(execution, now, job.stall_seconds, job.total_seconds)
    if reason is not None:
        moved = ex.time_out(execution, now, reason)
        if moved is None:
            return None
        saved = bumped(moved)
        repo.save_execution(saved)
        log.info("execution timed out", extra={"execution_id": execution_id, "reason": reason})
        return saved, "timeout", []
    transfer = execution.transfer
    if job.mode != "block" or transfer is None or transfer.complete:
        return None
    transfer, blocks = transfer.plan_overdue(now, ack_timeout)
    if not blocks:
        return None
    saved = bumped(replace(execution, transfer=transfer))
    repo.save_execution(saved)
    return saved, "resend", blocks


def _complete(repo: Repository, job_id: str) -> bool:
    job = repo.get_job(job_id)
    if job is None or job.state != "ACTIVE":
        return False
    repo.save_job(bumped(job, state="COMPLETED"))
    return True
