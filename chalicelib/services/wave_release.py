"""Releasing a started wave's executions (services/waves.py starts waves): release work items
`{"job_id", "wave", "from"}` on the fan-out queue, a page of RELEASE_PAGE ordinals each, every page
queuing the next (SQS redelivers a failed page). A page is read with one request and moved WAITING ->
QUEUED with one transaction (Repository.get_executions, save_executions), then its job documents go out
back to back, so the wave's devices start together and join its broadcast from the first block. An
execution whose write lost a race (a cancel, a sweep) is released alone, conditionally (release_one).
Does not: decide when a wave starts or is due (services/waves.py, domain/waves.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..domain import executions as ex
from ..domain import waves as rules
from ..domain.fallback import delivered
from ..domain.models import Execution, Job, Package, bumped
from ..domain.ports import FanoutQueue, Publisher, Repository, Storage
from .common import retrying

log = logging.getLogger(__name__)
RELEASE_PAGE = 100  # ordinals released per release work item


def release_one(repo: Repository, storage: Storage, publisher: Publisher, job: Job, package: Package,
                execution_id: str, wave: int, now: float) -> bool:
    """WAITING -> QUEUED (conditional; terminal and already released ones untouched), then its job document."""
    from .jobs import publish_job_document  # jobs imports fanout, which imports this module

    def step() -> Execution | None:
        current = repo.get_execution(execution_id)
        moved = current and ex.release(current, now, wave)
        if not moved:
            return None
        saved = bumped(moved)
        repo.save_execution(saved)
        return saved

    saved = retrying(step)
    if saved is None:
        return False
    taken = package if saved.package_id is None else repo.get_package(saved.package_id)  # a delta job's fallback
    if taken is not None:
        publish_job_document(publisher, storage, delivered(job, saved), taken, saved, now)
    return True


def release_many(repo: Repository, storage: Storage, publisher: Publisher, job: Job, package: Package,
                 execution_ids: Sequence[str], wave: int, now: float) -> int:
    """release_one for a page of members with one read and one write request (get_executions,
    save_executions), then their job documents back to back: a wave's devices start within moments of
    each other, so they join its broadcast before it has gone far (docs/protocol.md 15.1). One whose
    write lost a race (a cancel, a sweep) is released alone, as release_one does."""
    from .jobs import publish_job_document

    moves = [(e, bumped(moved)) for e in repo.get_executions(execution_ids)
             if (moved := ex.release(e, now, wave)) is not None]
    stored = repo.save_executions(moves)
    released = [after for (_, after), ok in zip(moves, stored, strict=True) if ok]
    for saved in released:
        taken = package if saved.package_id is None else repo.get_package(saved.package_id)
        if taken is not None:
            publish_job_document(publisher, storage, delivered(job, saved), taken, saved, now)
    lost = [after.execution_id for (_, after), ok in zip(moves, stored, strict=True) if not ok]
    return len(released) + sum(release_one(repo, storage, publisher, job, package, eid, wave, now) for eid in lost)


def handle_release(repo: Repository, storage: Storage, publisher: Publisher, queue: FanoutQueue, job: Job,
                   package: Package, message: dict[str, Any], now: float) -> int:
    """One release work item: the members of `wave` with ordinals from `from`, a page; queues the next."""
    wave, first = _count(message.get("wave")), _count(message.get("from"))
    if wave is None or first is None:
        log.warning("release item dropped", extra={"job_id": job.job_id, "item": str(message)[:200]})
        return 0
    if not rules.released(job, wave) or job.wave_size <= 0:
        return 0
    low, high = rules.bounds(job, wave)
    first = max(first, low)
    end = min(high, first + RELEASE_PAGE)
    members = repo.wave_members(job.job_id, first, end)
    late = repo.late_members(job.job_id) if wave == 0 and first == low else []
    count = release_many(repo, storage, publisher, job, package, _execution_ids(job.job_id, [*members, *late]),
                         wave, now)
    if members and end < high:
        queue.send([{"job_id": job.job_id, "wave": wave, "from": end}])
    elif job.wave_percent:  # the last page: the wave is complete (a size job's WAITING ones count already)
        repo.add_job_counts(job.job_id, {rules.released_marker(wave): 1})
    return count


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _execution_ids(job_id: str, epns: Sequence[str]) -> list[str]:
    from .fanout import execution_id

    return [execution_id(job_id, epn) for epn in dict.fromkeys(epns)]
