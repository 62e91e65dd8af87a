"""The scheduled sweeper: times out silent executions (or retries them), resends overdue blocks,
aborts jobs past their failure threshold, completes finished jobs, and times out remote-command runs
(services/commands.py: not started before expiry, or running past their deadline), and starts the next
wave of staged jobs when it is due (services/waves.py: start_due_waves).

Runs from a schedule (EventBridge on AWS, the local bridge's timer locally). It reads only what is
still active (`list_active_executions`, `list_active_jobs`: sparse indexes in DynamoDB), so its cost
follows the live rollouts, not the history. Every change is a conditional write, so two sweeps
running at once cannot double count or resurrect a terminal state.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from otaformat import messages, topics, wire

from ..domain import executions as ex
from ..domain.fallback import delivered
from ..domain.models import Execution, Job, bumped
from ..domain.ports import FanoutQueue, Publisher, Repository, Storage
from ..domain.retries import can_retry, retry, wire_id
from . import groups
from .abort import ABORTED, cancel_executions, check_abort
from .commands import sweep_commands
from .common import retrying
from .delivery import ACK_TIMEOUT_SECONDS, send_blocks
from .fanout import progress
from .jobs import InlineFanout, publish_job_document
from .jobs import finished as counted_finished
from .pacing import Pacing, paced_plan
from .waves import start_due_waves

log = logging.getLogger(__name__)
# a group member's backstop waits 4 x ack_timeout (20 s): its lost broadcast blocks are repaired by its own
# `get` and by fast repair, so the timer matters only when its messages are lost, and a shorter one mostly
# resends, by unicast, blocks it holds whose acks wait in a backlog of device messages (docs/protocol.md 15.3)
MEMBER_BACKSTOP_FACTOR = 4


@dataclass(frozen=True)
class SweepResult:
    timed_out: int = 0
    resent_blocks: int = 0
    completed_jobs: int = 0
    retried: int = 0
    aborted_jobs: int = 0
    commands_timed_out: int = 0
    waves_started: int = 0


def sweep(
    repo: Repository, storage: Storage, publisher: Publisher, now: float, ack_timeout: float = ACK_TIMEOUT_SECONDS,
    queue: FanoutQueue | None = None, pacing: Pacing | None = None,
) -> SweepResult:
    """One sweep; a started wave's executions are released through `queue` (the fan-out queue), or here
    and now without one."""
    timed_out = resent = completed = retried = aborted = 0
    by_job: dict[str, list[Execution]] = defaultdict(list)
    still_active: set[str] = set()
    for execution in repo.list_active_executions():
        by_job[execution.job_id].append(execution)
    for job_id, executions in by_job.items():
        job = repo.get_job(job_id)
        if job is not None and job.state in ("CANCELED", ABORTED):  # a cancel's listing missed them (index lag)
            cancel_executions(repo, publisher, executions, now, f"job {job.state.lower()}")
        if job is None or job.state != "ACTIVE":
            continue
        failures = False
        for execution in executions:
            outcome = retrying(partial(_sweep_one, repo, job, execution.execution_id, now, ack_timeout, pacing,
                                       _listed_first(repo, execution)))
            if outcome is None or outcome[2] != "timeout":
                still_active.add(job_id)
            if outcome is None:
                continue
            before, saved, kind, blocks = outcome
            if kind in ("timeout", "retry"):
                cancel = messages.Cancel(wire_id(before))
                publisher.publish(topics.topic(saved.epn, "job"), messages.encode(cancel))
            if kind == "timeout":
                timed_out += 1
                failures = True
            elif kind == "retry":
                retried += 1
                package = repo.get_package(delivered(job, saved).upload_id)  # a fallback's: the full package
                if package is not None:
                    publish_job_document(publisher, storage, job, package, saved, now)
            elif blocks:
                resent += send_blocks(publisher, storage, delivered(job, saved), saved, blocks)
        if failures and check_abort(repo, publisher, job_id, now):
            aborted += 1
    for job in repo.list_active_jobs():
        if job.job_id in still_active:
            continue  # something of it is still running: no need to list all of its executions
        # counters first; the executions are read only to confirm the end
        finished = counted_finished(job, progress(repo, job)) and all(
            ex.is_terminal(e.state) for e in repo.list_job_executions(job.job_id))
        if finished and retrying(partial(_complete, repo, job.job_id)):
            completed += 1
            groups.expire(repo, job.job_id, now)
    commands_timed_out = sweep_commands(repo, now)
    staged = start_due_waves(repo, publisher, now, queue or InlineFanout(repo, storage, publisher, now))
    publisher.flush()
    return SweepResult(timed_out, resent, completed, retried, aborted + staged.aborted, commands_timed_out,
                       staged.started)


def _listed_first(repo: Repository, listed: Execution) -> Callable[[str], Execution | None]:
    """Reads an execution for `_sweep_one`: first as the listing returned it (no second read per active
    execution per sweep), then from the table. A listing may lag the table (an index read), but every
    write below is conditional on the version it read, so a stale copy only loses the race and is read
    again (retrying); and a stale copy is never less overdue than the stored one (activity only grows)."""
    first = [listed]

    def read(execution_id: str) -> Execution | None:
        return first.pop() if first else repo.get_execution(execution_id)

    return read


def _sweep_one(
    repo: Repository, job: Job, execution_id: str, now: float, ack_timeout: float, pacing: Pacing | None = None,
    read: Callable[[str], Execution | None] | None = None,
) -> tuple[Execution, Execution, str, list[int]] | None:
    execution = (read or repo.get_execution)(execution_id)
    if execution is None or ex.is_terminal(execution.state):
        return None
    reason = ex.overdue_reason(execution, now, job.stall_seconds, job.total_seconds)
    if reason is not None:
        stalled = "stall timeout" in reason
        if stalled and can_retry(execution, job, reason):
            saved = bumped(retry(execution, now, reason, wire.new_stream()))
            repo.save_execution(saved)
            log.info("stalled execution retried", extra={"execution_id": execution_id, "attempt": saved.attempt})
            return execution, saved, "retry", []
        moved = ex.time_out(execution, now, reason)
        if moved is None:
            return None
        saved = bumped(moved)
        repo.save_execution(saved)
        log.info("execution timed out", extra={"execution_id": execution_id, "reason": reason})
        return execution, saved, "timeout", []
    transfer = execution.transfer
    if job.mode != "block" or transfer is None or transfer.complete:
        return None
    overdue = transfer  # paced: within the device's budget (services/pacing.py)
    timeout = ack_timeout * MEMBER_BACKSTOP_FACTOR if transfer.member else ack_timeout
    transfer, blocks = paced_plan(pacing, job, overdue, lambda limit: overdue.plan_overdue(now, timeout, limit))
    if not blocks:
        return None
    saved = bumped(replace(execution, transfer=transfer))
    repo.save_execution(saved)
    return execution, saved, "resend", blocks


def _complete(repo: Repository, job_id: str) -> bool:
    job = repo.get_job(job_id)
    if job is None or job.state != "ACTIVE":
        return False
    repo.save_job(bumped(job, state="COMPLETED"))
    return True
