"""One execution's device messages of a batch (status, acks, block and URL requests), applied in memory
and stored with ONE conditional write, then the blocks they freed sent (services/device_messages.py
sorts a batch into these groups).

Acks of one execution are coalesced: all of them (and its requests and statuses, in order) are applied
to one in-memory copy, so a batch costs one execution write per device however many acks it held. A
lost write race is merged, not blindly re-read: the failed conditional write returns the stored
execution (ConcurrentUpdate.current), the messages are applied again on top of it (no extra read),
after a short jittered pause, at most MERGE_ATTEMPTS times (then the group is redelivered by SQS, like
any infrastructure failure). Only a store that does not return the item makes it read again.

Group delivery (docs/protocol.md section 15; rules in domain/group.py, I/O in services/groups.py): a
member's transfer is synced with its group's broadcast cursor before its acks are believed, its holes
are repaired by unicast, and after its write its ack may advance the group's broadcast. A member that
lags or needs too many repairs falls back to unicast and gets its job document again without `group`.
Hardening kept from before: acks are believed only for blocks sent, each message is authorised by the
EPN of its topic, terminal states are sticky, messages of earlier attempts are ignored.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from otaformat import messages, wire

from ..domain import executions as ex
from ..domain import group as group_rules
from ..domain.errors import ConcurrentUpdate
from ..domain.fallback import delivered
from ..domain.models import Execution, Group, Job, Package, bumped
from ..domain.ports import Publisher, Repository, Storage
from ..domain.retries import can_retry, retry, split_wire_id, wire_id
from ..domain.window import MEMBER_REORDER_SLACK, REORDER_SLACK, Transfer
from . import groups
from .delivery import REQUEST_GUARD_SECONDS, ensure_transfer, send_blocks
from .pacing import Budget, Pacing, Wake, schedule

log = logging.getLogger(__name__)
MERGE_ATTEMPTS = 20  # many pollers racing on one device's execution (tests/contract: 16 at once)
HEARD_EVERY_SECONDS = 1.0  # a message that changes nothing else refreshes `heard_at` (a write) at most this often


class HotCache:
    """Per-container memory of jobs and packages (their delivery fields never change), of the executions
    this container saved last, and of group records. A cached execution or group may be stale: every
    save is conditional, and a lost race replaces the entry with what the store holds, so the cache only
    saves reads, never decides anything."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.jobs: dict[str, Job] = {}
        self.packages: dict[str, Package] = {}
        self.executions: dict[str, Execution] = {}
        self.groups: dict[str, Group] = {}
        self._lock = threading.Lock()

    def _put(self, table: dict[str, Any], key: str, value: Any) -> None:
        with self._lock:
            if key not in table and len(table) >= self.limit:
                table.pop(next(iter(table)))
            table[key] = value

    def execution(self, execution_id: str) -> Execution | None:
        return self.executions.get(execution_id)

    def forget(self, execution_id: str) -> None:
        with self._lock:
            self.executions.pop(execution_id, None)

    def remember(self, execution: Execution) -> None:
        self._put(self.executions, execution.execution_id, execution)

    def remember_group(self, group: Group) -> None:
        current = self.groups.get(group.group_id)
        if current is None or current.version <= group.version:
            self._put(self.groups, group.group_id, group)

    def job(self, repo: Repository, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            job = repo.get_job(job_id)
            if job is not None:
                self._put(self.jobs, job_id, job)
        return job

    def package(self, repo: Repository, upload_id: str) -> Package | None:
        package = self.packages.get(upload_id)
        if package is None:
            package = repo.get_package(upload_id)
            if package is not None:
                self._put(self.packages, upload_id, package)
        return package


Items = list[tuple[Any, Any]]  # (services.device_messages.DeviceMessage, decoded message)


@dataclass(frozen=True)
class Applied:
    """What one execution's messages did: the stored execution, the blocks to send it, whether its job
    document goes out again, how many messages changed something, and its group (when a member)."""

    execution: Execution
    job: Job
    blocks: list[int]
    republish: bool
    changed: int
    group: Group | None = None
    woken_at: float | None = None  # a wake was among the messages: its due time
    ended: bool = False  # these messages moved it to a terminal state


def apply_messages(repo: Repository, cache: HotCache, execution_id: str, items: Items,
                   pacing: Pacing | None = None, sent_at: float | None = None) -> Applied | None:
    """Apply and store one execution's messages (one write); None when none of them applies. Sends are
    stamped `sent_at` (the handler's clock; default: the newest message's broker time), while acks and
    requests keep the broker's time of their message (docs/protocol.md 15.3: the two clocks)."""
    base = cache.execution(execution_id)
    if base is not None and any(split_wire_id(d.execution_id)[1] > base.attempt for _, d in items):
        base = None  # retried elsewhere (sweeper): the cache is behind
    base = base or repo.get_execution(execution_id)
    for _ in range(MERGE_ATTEMPTS - 1):
        if base is None:
            break
        try:
            return _apply_once(repo, cache, base, items, pacing, sent_at)
        except ConcurrentUpdate as err:  # merge into what the winner stored (returned by the failed write)
            base = err.current if isinstance(err.current, Execution) else repo.get_execution(execution_id)
            time.sleep(random.uniform(0, 0.002))
    if base is None:
        log.warning("message for an unknown execution ignored", extra={"execution_id": execution_id})
        return None
    return _apply_once(repo, cache, base, items, pacing, sent_at)  # a last loss raises: SQS redelivers this group


def _apply_once(repo: Repository, cache: HotCache, original: Execution, items: Items,
                pacing: Pacing | None = None, sent_at: float | None = None) -> Applied | None:
    items = _owned(original, items)  # each message is authorised by the EPN of its own topic
    if not items:
        return None
    job = cache.job(repo, original.job_id)
    if job is None:
        return None
    job = delivered(job, original)  # a delta job's fallback execution: the full package's fields, unicast
    seen = max(m.received_at for m, _ in items)
    state = _State(repo, cache, job, original, pacing, seen if sent_at is None else sent_at)
    for message, decoded in items:
        state.apply(message, decoded)
    execution, blocks, republish = state.finish(seen)
    if execution == original:  # a member's wake changes nothing itself, but may advance its group
        member = state.group if execution.transfer is not None and execution.transfer.member else None
        return Applied(execution, job, [], republish, state.changed, member, state.budget.woken_at)
    saved = bumped(execution)
    # paced: the wake goes out just before the write that records it, so the next burst is timed from here
    # (a write that then loses leaves a stray wake: it sends at most the budget and schedules nothing)
    schedule(pacing, *state.wake)
    try:
        repo.save_execution(saved)
    except ConcurrentUpdate:
        cache.forget(original.execution_id)
        raise
    cache.remember(saved)
    member = state.group if saved.transfer is not None and saved.transfer.member else None
    ended = ex.is_terminal(saved.state) and not ex.is_terminal(original.state)
    return Applied(saved, job, blocks, republish, state.changed, member, state.budget.woken_at, ended)


class _State:
    """The in-memory copy of one execution while its messages are applied in order."""

    def __init__(self, repo: Repository, cache: HotCache, job: Job, execution: Execution,
                 pacing: Pacing | None = None, sent_at: float = 0.0) -> None:
        self.repo, self.cache, self.job, self.execution = repo, cache, job, execution
        self.original = execution
        self.sent_at = sent_at  # the handler's clock: what its sends are stamped with
        self.budget = Budget(pacing if job.mode == "block" else None, job)
        self.wake: tuple[dict[str, Any] | None, int] = (None, 0)
        self.blocks: list[int] = []
        self.republish = False
        self.changed = 0
        self.heard = False  # a message of the device (not a wake) was applied
        self.acked = False
        self.block_mode = job.mode == "block"
        package = cache.package(repo, job.upload_id) if self.block_mode else None
        self.package = package
        self.grouped = package is not None and group_rules.group_model(job, package) is not None
        self.group: Group | None = None

    def find_group(self, now: float) -> Group | None:
        if self.group is None and self.grouped and self.package is not None:
            self.group = groups.find_group(self.repo, self.cache, self.job, self.package, now, self.execution.wave)
        return self.group

    def apply(self, message: Any, decoded: Any) -> None:
        execution, job, now = self.execution, self.job, message.received_at
        eid = execution.execution_id
        if split_wire_id(decoded.execution_id)[1] != execution.attempt:
            log.info("message of an earlier attempt ignored",
                     extra={"execution_id": eid, "attempt": execution.attempt, "leaf": message.leaf})
            return
        if execution.state == ex.WAITING:  # its wave has not started: it was never sent
            log.info("message for an execution not sent yet ignored", extra={"execution_id": eid})
            return
        if ex.is_terminal(execution.state):
            late = _late_ack(execution, job, decoded, now)
            if late is None:
                log.info("message after a terminal state ignored",
                         extra={"execution_id": eid, "state": execution.state, "leaf": message.leaf})
                return
            self.execution = late
        elif isinstance(decoded, messages.Status):
            moved = ex.apply_status(execution, decoded.state, decoded.step, decoded.reason, decoded.seq, now,
                                    decoded.progress, job.block_count)
            if moved is None:
                log.info("stale or duplicate status ignored", extra={"execution_id": eid, "seq": decoded.seq})
                return
            self.execution = moved
            if moved.state == ex.FAILED and can_retry(moved, job, decoded.reason):
                self.execution = retry(moved, now, decoded.reason, wire.new_stream())
                self.republish = True
                log.info("execution retried", extra={"execution_id": eid, "attempt": self.execution.attempt})
            elif self.block_mode and decoded.state == ex.IN_PROGRESS and decoded.step == "DOWNLOADING":
                transfer = self._joined(ensure_transfer(moved, job), decoded, now)  # `g`: joins its group
                self.execution = replace(moved, transfer=transfer)
            elif self.block_mode and moved.state == ex.SUCCEEDED:
                self.execution = _flag_early_success(moved, job)
        elif isinstance(decoded, Wake):  # paced: its own continuation; the plan in `finish` sends the budget
            self.budget.woken_at = decoded.at
            if execution.transfer is not None and execution.transfer.member:
                self.find_group(now)  # a member's wake continues its group's broadcast (advance_group)
        elif isinstance(decoded, messages.UrlRefresh):
            self.republish = job.mode == "url"
            self.execution = ex.touch(execution, now)
        elif self.block_mode and decoded.stream == execution.stream:
            transfer = self._joined(ensure_transfer(execution, job), decoded, now)
            if isinstance(decoded, wire.Ack):
                transfer, _ = transfer.ack(decoded.received(job.block_count), now)
                self.acked = True
            else:
                wanted = decoded.wanted(job.block_count)  # paced: what the budget holds back is deferred
                transfer, resend = self.budget.take_requested(transfer, wanted, self.sent_at, REQUEST_GUARD_SECONDS,
                                                              requested_at=now)
                self.blocks.extend(resend)
            self.execution = replace(ex.touch(execution, now), transfer=transfer,
                                     started_at=execution.started_at or now)
        else:
            log.info("ack or request for another stream or mode ignored", extra={"execution_id": eid})
            return
        self.changed += 1
        self.heard = self.heard or not isinstance(decoded, Wake)  # a wake is the cloud's own, not the device's

    def _joined(self, transfer: Transfer, decoded: Any, now: float) -> Transfer:
        """The transfer seen through the group: joined when the message carries the group stream, and
        synced with the broadcast cursor (re-read once if the device acknowledges past it)."""
        if not self.grouped or transfer.unicast:
            return transfer
        if not transfer.member and decoded.group is None:
            return transfer
        group = self.find_group(now)
        if group is None:
            return transfer
        if not transfer.member:
            if decoded.group != group.stream:
                return transfer
            transfer = replace(transfer, member=True)
        if isinstance(decoded, wire.Ack) and decoded.contiguous > group.next_index:
            group = self.group = groups.refreshed(self.repo, self.cache, group)
        return transfer.sync(group.next_index, group.recent)

    def finish(self, seen: float) -> tuple[Execution, list[int], bool]:
        """Fallback, fast repair and (unicast) new blocks after the last message (the broker received the
        newest at `seen`; the sends are stamped with the handler's clock)."""
        execution = self.execution
        transfer = execution.transfer
        if not self.block_mode or transfer is None or ex.is_terminal(execution.state):
            return execution, self.blocks, self.republish
        at = self.sent_at
        unchanged = execution == self.original
        if self.heard and (not unchanged or at - transfer.heard_at >= HEARD_EVERY_SECONDS):
            transfer = replace(transfer, heard_at=max(transfer.heard_at, at))  # no write of its own more often
        group = self.group
        if transfer.member and group is not None and group_rules.must_fall_back(group, transfer, seen):
            log.info("group member falls back to unicast",
                     extra={"execution_id": execution.execution_id, "group": group.group_id,
                            "acked": transfer.acked_count, "cursor": group.next_index})
            transfer = transfer.fall_back()
            self.republish = True  # its job document again, without `group`: the device leaves the group
        repaired: list[int] = []
        if transfer.deferred:  # paced: requests the budget held back before, first
            owed = transfer
            transfer, repaired = self.budget.take_requested(owed, list(owed.deferred), at, REQUEST_GUARD_SECONDS,
                                                            deferred=True, requested_at=seen)
        if self.acked or self.budget.woken_at is not None:  # a wake: repairs the budget held back before
            gapped = transfer
            slack = MEMBER_REORDER_SLACK if gapped.member else REORDER_SLACK
            transfer, gaps = self.budget.take(gapped, lambda limit: gapped.plan_gaps(at, limit, slack))
            repaired += gaps
        fresh: list[int] = []
        if not transfer.member:  # a member's new blocks come from the group's broadcast
            unsent = transfer
            transfer, fresh = self.budget.take(unsent, lambda limit: unsent.plan_new(at, limit))
        transfer, body, delay = self.budget.settle(transfer, wire_id(execution), execution.epn)
        self.wake = (body, delay)
        return replace(execution, transfer=transfer), self.blocks + repaired + fresh, self.republish


def advance_group(repo: Repository, storage: Storage, publisher: Publisher, cache: HotCache, applied: Applied,
                  now: float, pacing: Pacing | None = None) -> int:
    """After a member's write: broadcast what its ack (or wake) made room for (services/groups.py)."""
    execution = applied.execution
    transfer = execution.transfer
    if applied.group is None or transfer is None or not transfer.member:
        return 0
    woken = (wire_id(execution), execution.epn, applied.woken_at)
    return groups.advance_for(repo, storage, publisher, cache, applied.job, applied.group, transfer, now, pacing,
                              woken)


def send_applied(publisher: Publisher, storage: Storage, applied: Applied) -> int:
    return send_blocks(publisher, storage, applied.job, applied.execution, applied.blocks) if applied.blocks else 0


def _flag_early_success(execution: Execution, job: Job) -> Execution:
    """Block mode: a SUCCEEDED that came before every block was sent and acknowledged keeps its state
    (terminal, sticky) but carries a note, and progress keeps showing only acknowledged blocks."""
    note = ex.early_success_note(execution, job.block_count)
    if note is not None and note != execution.note:
        log.warning("SUCCEEDED before every block was acknowledged",
                    extra={"execution_id": execution.execution_id, "note": note})
    return replace(execution, note=note)


def _late_ack(execution: Execution, job: Job, decoded: Any, now: float) -> Execution | None:
    """An ack landing after its SUCCEEDED (SQS does not keep the order of topics): still recorded, so
    progress reaches what really happened, but nothing is sent. None for anything else after a
    terminal state (ignored)."""
    if (execution.state != ex.SUCCEEDED or job.mode != "block" or execution.transfer is None
            or not isinstance(decoded, wire.Ack) or decoded.stream != execution.stream):
        return None
    transfer, new = execution.transfer.ack(decoded.received(job.block_count), now)
    if not new:
        return None
    return _flag_early_success(replace(execution, transfer=transfer), job)


def _owned(execution: Execution, items: Items) -> Items:
    """The messages that arrived on the topic of the device the execution belongs to; every other one
    is logged and dropped, one by one, wherever it sits in the batch (the caller counts it ignored)."""
    owned = [(m, d) for m, d in items if m.epn == execution.epn]
    for message, _ in items:
        if message.epn != execution.epn:
            log.warning("message for another device's execution ignored",
                        extra={"execution_id": execution.execution_id, "epn": message.epn, "leaf": message.leaf})
    return owned
