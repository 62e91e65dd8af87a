"""Paced block delivery without sleeping (issue 12): the per-device budget of domain/pacing.py applied to
one handler's sends, and the continuation ("wake") a handler schedules for itself when the budget, not
the window, holds blocks back.

A handler (device messages, a wake, the sweeper's resend) sends only what the budget allows now and
records those sends in the transfer's ledger with the same conditional write that records them as sent.
When blocks the window would allow are held back by the budget, it schedules a wake for the moment the
budget has room again: a delayed message (WakeQueue, SQS DelaySeconds on the device-message queue) with
body `{"wake": {"x": <wire execution id>, "epn": <EPN>, "at": <due time>}}`. The device-message trigger
turns it into a DeviceMessage of leaf WAKE that is applied with the execution's other messages of its
batch: it changes nothing by itself; the plan after it sends the next budget and schedules the next
wake. One wake is pending per transfer at most: `Transfer.wake_at` goes with the conditional write that
follows the message (sent just before it, so the next burst is timed from the planning, not from the
write), and a handler schedules one only when none is due later, or when it is that wake. A duplicated,
late or stale wake (other attempt, terminal state, a write that lost its race) sends at most what the
budget allows and schedules nothing more. A wake that could not be sent is logged and replaced by the next
handler that finds `wake_at` passed (the device's `get` when blocks stop coming, its next ack, the sweeper).

Does not: decide which blocks (domain/window.py), sleep, or pace group broadcasts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from otaformat import wire
from otaformat.errors import MalformedError

from ..domain.models import Group, Job, bumped
from ..domain.pacing import Pace, delay_seconds
from ..domain.ports import Clock, WakeQueue
from ..domain.window import Transfer

log = logging.getLogger(__name__)
WAKE = "wake"  # the leaf of a wake's DeviceMessage (never a device topic: devices cannot send one)
PACE_MS = 1000  # the job document's `pace_ms` while pacing: bursts come at most about this far apart


@dataclass(frozen=True)
class Wake:
    """A decoded wake: the execution (wire id: id and attempt) and when its budget was due."""

    execution_id: str
    at: float


@dataclass(frozen=True)
class Pacing:
    """The deployment's per-device limits, where wakes go, and the clock sends are timed by (the
    handler's own clock: device messages' receive times may be older than the send)."""

    pace: Pace
    queue: WakeQueue
    clock: Clock

    @property
    def pace_ms(self) -> int:
        return PACE_MS if self.pace.enabled else 0


def wake_body(execution_id: str, epn: str, at: float) -> dict[str, Any]:
    return {WAKE: {"x": execution_id, "epn": epn, "at": at}}


def decode_wake(payload: bytes) -> Wake:
    """The wake a WAKE DeviceMessage carries (its payload is the body's inner object, as JSON)."""
    try:
        data = json.loads(payload) if len(payload) <= 512 else None
    except ValueError as err:
        raise MalformedError("a wake must be a small JSON object") from err
    if not isinstance(data, dict) or not isinstance(data.get("x"), str):
        raise MalformedError("a wake names its execution in 'x'")
    at = data.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise MalformedError("a wake's 'at' must be a number")
    return Wake(data["x"], float(at))


def frame_bytes(job: Job) -> int:
    """The bytes one block frame costs against the byte limit (every block counted as a full one)."""
    return wire.FRAME_HEADER.size + max(1, min(job.block_size, job.package_size or 1))


class Budget:
    """One handler's budget for one transfer: how many more frames it may send now. `take` narrows each
    plan to what is left; `settle` records the sends in the ledger and, if blocks were held back,
    schedules the wake (returned: body and delay, to send after the conditional write)."""

    def __init__(self, pacing: Pacing | None, job: Job, woken_at: float | None = None) -> None:
        self.pacing = pacing if pacing is not None and pacing.pace.enabled else None
        self.job = job
        self.frame = frame_bytes(job)
        self.now = self.pacing.clock() if self.pacing is not None else 0.0
        self.left: int | None = None
        self.opened = False
        self.spent = 0
        self.held = False  # some plan was cut short by the budget
        self.woken_at = woken_at  # set when a wake is among the messages applied

    def limit(self, transfer: Transfer) -> int | None:
        """What the next plan may choose at most (None: unpaced)."""
        if self.pacing is None:
            return None
        if not self.opened:
            self.opened = True
            self.left = self.pacing.pace.room(transfer.paced, self.now, self.frame)
        return self.left

    def took(self, wanted: int, chosen: int) -> None:
        """A plan that wanted `wanted` (unlimited) chose `chosen`."""
        if self.pacing is None or self.left is None:
            return
        self.left -= chosen
        self.spent += chosen
        self.held = self.held or chosen < wanted

    def take(self, transfer: Transfer, plan: Any) -> tuple[Transfer, list[int]]:
        """Run `plan(limit)` (a Transfer.plan_* bound with its other arguments) within the budget."""
        limit = self.limit(transfer)
        planned, chosen = plan(limit)
        if limit is not None and len(chosen) >= limit:
            _, unlimited = plan(None)
            self.took(len(unlimited), len(chosen))
        else:
            self.took(len(chosen), len(chosen))
        return planned, chosen

    def take_requested(self, transfer: Transfer, wanted: list[int], now: float, guard: float,
                       deferred: bool = False, requested_at: float | None = None) -> tuple[Transfer, list[int]]:
        """Blocks asked for again (a `get`, or with `deferred` the ones held back before): what the budget
        allows now; what it held back stays in `transfer.deferred` (at most a window) for the next handler.
        `now` stamps the sends, `requested_at` (default `now`) is when the request reached the broker."""
        planned, chosen = self.take(transfer, lambda limit: transfer.plan_requested(wanted, now, guard, limit,
                                                                                   requested_at))
        if self.pacing is None:
            return planned, chosen
        _, owed = transfer.plan_requested(wanted, now, guard, requested_at=requested_at)
        served = set(chosen)
        keep = {i for i in owed if i not in served}
        if not deferred:  # a new request adds to what is still owed from earlier ones
            keep |= {i for i in planned.deferred if i not in served and not planned.is_acked(i)}
        return replace(planned, deferred=tuple(sorted(keep)[: planned.window])), chosen

    def settle(self, transfer: Transfer, execution_id: str, epn: str) -> tuple[Transfer, dict[str, Any] | None, int]:
        """The transfer with this handler's sends recorded, and the wake to schedule (body, delay) if the
        budget held blocks back and no other wake is pending."""
        pacing = self.pacing
        if pacing is None or not self.opened:
            return transfer, None, 0
        pace = pacing.pace
        ledger = pace.spend(transfer.paced, self.now, self.spent, self.frame)
        transfer = replace(transfer, paced=ledger) if ledger != transfer.paced else transfer
        more = self.held or bool(transfer.deferred) or (not transfer.member and transfer.new_room > 0
                                                         and self.left == 0)
        if not more or transfer.complete:
            return transfer, None, 0
        pending = transfer.wake_at > self.now and transfer.wake_at != self.woken_at
        if pending:
            return transfer, None, 0
        due = pace.free_at(ledger, self.now, self.frame)
        transfer = replace(transfer, wake_at=due)
        return transfer, wake_body(execution_id, epn, due), delay_seconds(due, self.now)


def paced_plan(pacing: Pacing | None, job: Job, transfer: Transfer, plan: Any) -> tuple[Transfer, list[int]]:
    """One plan within the budget, its sends recorded; no wake (the sweeper's resend: acks drive the rest)."""
    budget = Budget(pacing, job)
    planned, chosen = budget.take(transfer, plan)
    if budget.pacing is None:
        return planned, chosen
    ledger = budget.pacing.pace.spend(planned.paced, budget.now, budget.spent, budget.frame)
    return replace(planned, paced=ledger), chosen


def group_plan(pacing: Pacing | None, job: Job, group: Group, plan: Any, woken_at: float | None, execution_id: str,
               epn: str) -> tuple[Group, list[int], dict[str, Any] | None, int]:
    """A group's next broadcast within its budget (`plan(limit)` is domain/group.advance bound to the
    acking member): the group to save (ledger recorded; `wake_at` set when blocks were held back and no
    group wake is pending), the blocks, and the wake to schedule (for that member's execution: its wake
    advances the group again)."""
    pace = pacing.pace if pacing is not None and pacing.pace.enabled else None
    if pace is None or pacing is None:
        moved, blocks = plan(None)
        return moved, blocks, None, 0
    now, frame = pacing.clock(), frame_bytes(job)
    limit = pace.room(group.paced, now, frame)
    moved, blocks = plan(limit)
    held = limit is not None and len(blocks) >= limit and len(plan(None)[1]) > len(blocks)
    ledger = pace.spend(group.paced, now, len(blocks), frame)
    if blocks:
        moved = replace(moved, paced=ledger)
    pending = group.wake_at > now and group.wake_at != woken_at
    if not held or pending:
        return moved, blocks, None, 0
    due = pace.free_at(ledger, now, frame)
    moved = replace(moved, wake_at=due) if blocks else bumped(group, paced=ledger, wake_at=due)
    return moved, blocks, wake_body(execution_id, epn, due), delay_seconds(due, now)


def schedule(pacing: Pacing | None, body: dict[str, Any] | None, delay: int) -> bool:
    """Send a wake; a failure is logged, not raised (the blocks already recorded as sent must still go
    out; the next handler that finds the wake overdue schedules another)."""
    if pacing is None or body is None:
        return False
    try:
        pacing.queue.wake(body, delay)
    except Exception:  # SQS trouble: the next ack, get or sweep finds wake_at passed and schedules anew
        log.exception("paced execution's wake not scheduled", extra={"wake": body.get(WAKE)})
        return False
    return True
