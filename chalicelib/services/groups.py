"""Group delivery, the I/O half (docs/protocol.md section 15; the rules are in domain/group.py).

Finds (or creates) the group record of a job's model, keeps it in the container's HotCache, and
advances the broadcast for a member whose ack made room: one conditional write of the group record,
then one publish per block on the group topic. A lost race uses the record the failed write returned
(ConcurrentUpdate.current) instead of reading it again, and is retried at most GROUP_RETRIES times:
whoever won has broadcast those blocks already. When a job ends (COMPLETED, CANCELED, ABORTED) its group
records get `expires_at` (`expire`): the store deletes them some time later (DynamoDB TTL). Does not:
decide membership or fallback (the caller, services/execution_messages.py, applies domain/group.py),
or send unicast repairs.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from ..domain import group as rules
from ..domain.errors import ConcurrentUpdate, Conflict
from ..domain.models import Group, Job, Package, bumped
from ..domain.ports import Publisher, Repository, Storage
from ..domain.window import Transfer
from .common import retrying
from .delivery import broadcast_blocks
from .pacing import Pacing, group_plan, schedule

if TYPE_CHECKING:
    from .execution_messages import HotCache

log = logging.getLogger(__name__)
GROUP_RETRIES = 3
GROUP_TTL_SECONDS = 24 * 3600  # a group record is kept this long after its job ended, then expires (TTL)


def find_group(repo: Repository, cache: HotCache, job: Job, package: Package, now: float,
               wave: int | None = None) -> Group | None:
    """The job's group for its package's model (and the execution's wave, for a staged job; created on
    first use), or None for a unicast job."""
    model = rules.group_model(job, package)
    if model is None:
        return None
    gid = rules.group_id(job.job_id, model, wave)
    group = cache.groups.get(gid) or repo.get_group(gid)
    if group is None:
        group = rules.new_group(job, model, now, wave)
        try:
            repo.create_group(group)
        except Conflict:
            group = repo.get_group(gid)
            if group is None:
                return None
    cache.remember_group(group)
    return group


def refreshed(repo: Repository, cache: HotCache, group: Group) -> Group:
    """The stored group (one read), for when a member acknowledges past the cursor this container knows."""
    fresh = repo.get_group(group.group_id) or group
    cache.remember_group(fresh)
    return fresh


def advance_for(
    repo: Repository, storage: Storage, publisher: Publisher, cache: HotCache, job: Job, group: Group,
    transfer: Transfer, now: float, pacing: Pacing | None = None, woken: tuple[str, str, float | None] = ("", "", None),
) -> int:
    """Broadcast the blocks a member's ack (or its wake, `woken`: wire execution id, EPN, the wake's due
    time) made room for, within the group's budget when paced (services/pacing.py: the rest continues by
    a wake of that member's execution); returns how many were published."""
    for _ in range(GROUP_RETRIES):
        newer = cache.groups.get(group.group_id)  # another handler of this container may have advanced it
        if newer is not None and newer.version > group.version:
            group = newer
        plan = partial(rules.advance, group, transfer.sync(group.next_index, group.recent), now)
        moved, blocks, wake, delay = group_plan(pacing, job, group, plan, woken[2], woken[0], woken[1])
        if moved is group:
            return 0
        schedule(pacing, wake, delay)  # paced: just before the write, as for an execution (execution_messages.py)
        try:
            repo.save_group(moved)
        except ConcurrentUpdate as err:  # another handler advanced it: merge with what it stored
            current = err.current if isinstance(err.current, Group) else repo.get_group(group.group_id)
            if current is None:
                return 0
            group = current
            cache.remember_group(group)
            continue
        cache.remember_group(moved)
        log.debug("group advanced", extra={"group": moved.group_id, "next": moved.next_index})
        return broadcast_blocks(publisher, storage, job, moved, blocks) if blocks else 0
    return 0


def expire(repo: Repository, job_id: str, now: float) -> int:
    """The ended job's group records expire GROUP_TTL_SECONDS from now (those already set keep theirs);
    returns how many were marked. Conditional writes: a racing broadcast keeps the mark (it merges)."""
    marked = 0
    for group in repo.job_groups(job_id):
        def mark(gid: str = group.group_id) -> bool:
            current = repo.get_group(gid)
            if current is None or current.expires_at is not None:
                return False
            repo.save_group(bumped(current, expires_at=now + GROUP_TTL_SECONDS))
            return True

        marked += retrying(mark)
    return marked
