"""Group delivery rules (docs/protocol.md section 15), pure: who is offered a group, its topic and
stream, when the broadcast advances, and when a member falls back to unicast. No I/O, no clock.

A group is the devices of one model taking one block-mode job (for a staged job, domain/waves.py: one
wave of it, so a later wave starts its own broadcast from block 0 instead of joining one far ahead). The
cloud broadcasts each block once on `ota/g/{model}/{job_id}/blk` (a wave's:
`ota/g/{model}/{job_id}-w{wave}/blk`); a device joins by carrying the group stream (`g`) in its acks and
requests. The broadcast advances when a member's ack leaves at most half a window of its sent blocks
unacknowledged (the pace of the fastest member); a member that lags the cursor by more than
FALLBACK_LAG_WINDOWS windows, or needed more than FALLBACK_REPAIR_WINDOWS windows of repairs (and more
than 1/8 of what it acknowledged), is moved to unicast for the rest of its attempt.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

from otaformat import messages, topics

from .fallback import is_fallback_view, takes_fallback
from .models import Execution, Group, Job, Package
from .window import MAX_RECENT_RUNS, RECENT_HORIZON, Transfer

FALLBACK_LAG_WINDOWS = 4  # a member more than 4 windows behind the cursor falls back to unicast
FALLBACK_REPAIR_WINDOWS = 2  # ... and one that needed more than 2 windows of blocks resent
REPAIR_SHARE = 8  # ... when they are also more than 1/8 of the blocks it acknowledged (a long transfer may
# need many repairs at a low loss rate and still be better served by the group)
LAG_GRACE = 2.0  # seconds: a block broadcast this long before the broker received a member's message must be
# in that message's acks (delivery, the device's write and its ack policy take less); later ones may not be


def group_model(job: Job, package: Package) -> str | None:
    """The model whose devices share the job's broadcast, or None when the job is unicast only: the
    reference cloud offers a group to block-mode jobs of a one-model package aimed at a model or at two
    or more devices. A delta job's fallback executions (domain/fallback.py) are unicast only."""
    if job.mode != "block" or len(package.models) != 1 or is_fallback_view(job):
        return None
    if "model" not in job.target_spec:  # an explicit list: its length (target_count; older jobs kept the list)
        count = job.target_count or len(job.target_spec.get("devices", ())) or len(job.targets)
        if count < 2:
            return None
    return package.models[0]


def offered(job: Job, package: Package, execution: Execution) -> messages.Group | None:
    """The `group` of the execution's job document: None for a unicast job, and once the execution fell
    back to unicast (the document republished without it tells the device to leave the group)."""
    model = group_model(job, package)
    if model is None or takes_fallback(job, execution) or (execution.transfer is not None
                                                           and execution.transfer.unicast):
        return None
    wave = execution.wave
    return messages.Group(group_topic(job.job_id, model, wave), group_stream(job.job_id, model, wave))


def group_id(job_id: str, model: str, wave: int | None = None) -> str:
    return f"{job_id}.{model}" if wave is None else f"{job_id}.{model}.w{wave}"


def group_stream(job_id: str, model: str, wave: int | None = None) -> int:
    """The stream the group's frames carry: fixed by job, model (and wave), so nothing has to be stored."""
    name = f"{job_id}/{model}" if wave is None else f"{job_id}/{model}/{wave}"
    return zlib.crc32(name.encode()) & 0xFFFF


def group_topic(job_id: str, model: str, wave: int | None = None) -> str:
    """`ota/g/{model}/{job_id}/blk`; a wave's: `ota/g/{model}/{job_id}-w{wave}/blk` (the same five levels,
    so the brokers' access rules for the model's group topics cover it unchanged)."""
    return topics.group_block_topic(model, job_id if wave is None else f"{job_id}-w{wave}")


def new_group(job: Job, model: str, now: float, wave: int | None = None) -> Group:
    return Group(group_id=group_id(job.job_id, model, wave), job_id=job.job_id, model=model,
                 stream=group_stream(job.job_id, model, wave), total=job.block_count, window=job.window,
                 created_at=now, wave=wave)


def wants_advance(group: Group, transfer: Transfer) -> bool:
    """A member's ack left at most half a window of its sent blocks unacknowledged, and the group has
    blocks left to broadcast."""
    return (transfer.member and group.next_index < group.total
            and transfer.next_index >= group.next_index and transfer.in_flight <= group.window // 2)


def advance(group: Group, transfer: Transfer, now: float, limit: int | None = None) -> tuple[Group, list[int]]:
    """The next blocks to broadcast (the room the member's ack made, at most a window and `limit`), and
    the group after sending them; ([], unchanged) when nothing is due."""
    if not wants_advance(group, transfer):
        return group, []
    room = group.window - transfer.in_flight if limit is None else min(limit, group.window - transfer.in_flight)
    end = min(group.total, group.next_index + max(room, 0))
    chosen = list(range(group.next_index, end))
    if not chosen:
        return group, []
    stamp = max([now, *(run[2] for run in group.recent)])  # never before an earlier broadcast (other handlers' clocks)
    runs = [run for run in group.recent if stamp - run[2] < RECENT_HORIZON]
    runs.append((group.next_index, end, stamp))
    moved = replace(group, next_index=end, broadcasts=group.broadcasts + len(chosen),
                    recent=tuple(runs[-MAX_RECENT_RUNS:]), version=group.version + 1)
    return moved, chosen


def broadcast_before(group: Group, at: float) -> int:
    """How many blocks the group provably broadcast at or before `at`: the end of the newest remembered
    broadcast sent by then; every block when nothing is remembered (all went out RECENT_HORIZON ago or
    more), none when every remembered broadcast is later (the blocks below them may be later too)."""
    if not group.recent:
        return group.next_index
    return max((end for _, end, sent in group.recent if sent <= at), default=0)


def must_fall_back(group: Group, transfer: Transfer, seen_at: float | None = None) -> bool:
    """A member lagging by more than FALLBACK_LAG_WINDOWS windows, or resent more than
    FALLBACK_REPAIR_WINDOWS windows of blocks that are also more than 1/REPAIR_SHARE of the blocks it
    acknowledged, leaves the group. The lag counts only blocks broadcast LAG_GRACE seconds or more
    before the broker received the member's latest message (`seen_at`; None: the whole cursor), so a
    backlog of device messages (acks handled late, not lost) never moves a member to unicast."""
    if not transfer.member:
        return False
    reach = group.next_index if seen_at is None else broadcast_before(group, seen_at - LAG_GRACE)
    lag = reach - transfer.acked_count
    repaired = transfer.retransmissions
    lossy = repaired > FALLBACK_REPAIR_WINDOWS * group.window and repaired * REPAIR_SHARE > transfer.acked_count
    return lag > FALLBACK_LAG_WINDOWS * group.window or lossy
