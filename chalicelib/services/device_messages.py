"""Device messages (what the IoT topic rule forwards): status, inventory, acks, block and URL requests;
command results (`cmd/result`) are handed to services/commands.py, and an inventory also resends the
device's unstarted commands and offers it the releases it follows (services/releases.py).

A batch is grouped per execution: every message of one execution is applied in memory, then one
conditional write saves the result, then the blocks it freed are sent (services/execution_messages.py,
which also runs group delivery). Duplicated, reordered and late
messages change nothing (sticky terminal states, sequence numbers, idempotent ack bitmap). An inventory
updates the device and republishes the job documents of its unfinished executions (a device that was
offline gets its job when it returns).

Isolation, so that one device can never harm another:
- every payload is decoded with its size and nesting bounded before parsing; a malformed message is
  logged, counted and dropped, never retried;
- every message is authorised by the EPN of the topic it arrived on: a message naming an execution of
  another device is dropped (counted as ignored), message by message, wherever it sits in the batch;
- an infrastructure failure (DynamoDB, S3, the publisher) fails only the group it happened in: its
  messages' ids are returned in `Outcome.failures` (the trigger turns them into a partial batch
  response), and every other group of the batch is still applied.
It does not parse SQS bodies or topics (the trigger does) and never raises for a device's input.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from otaformat import messages, wire
from otaformat.canonical import parse_json
from otaformat.errors import FormatError, MalformedError

from ..domain import executions as ex
from ..domain.fallback import delivered
from ..domain.models import bumped
from ..domain.ports import FanoutQueue, Publisher, Repository, Storage
from ..domain.retries import FAILURES, split_wire_id
from . import commands as command_service
from . import releases, waves
from .abort import check_abort
from .common import retrying
from .execution_messages import HotCache, advance_group, apply_messages, send_applied
from .jobs import publish_job_document
from .pacing import WAKE, Pacing, decode_wake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceMessage:
    """One device-to-cloud message: the EPN and leaf of its topic (the EPN is the device's MQTT identity,
    enforced by the broker), the raw payload, and the SQS message id it came in (for partial failures)."""

    epn: str
    leaf: str
    payload: bytes
    received_at: float
    message_id: str = ""


@dataclass(frozen=True)
class Outcome:
    """What a batch did. `failures` maps the SQS message id of every message whose group hit an
    infrastructure failure to that failure: those, and only those, must be redelivered."""

    applied: int = 0
    ignored: int = 0
    malformed: int = 0
    blocks_sent: int = 0
    failures: dict[str, Exception] = field(default_factory=dict)


# Execution ids the service issues ("ex-<hex>", ".r<n>" on the wire): anything else is malformed, so
# that no device-chosen string reaches a table key.
_EXECUTION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def decode(message: DeviceMessage) -> Any:
    """Typed message (Status, Inventory, Ack, BlockRequest, UrlRefresh) or raise FormatError.

    Every JSON payload is bounded (wire.MAX_CONTROL_MESSAGE / messages.MAX_STATUS_MESSAGE bytes,
    wire.MAX_DEVICE_JSON_DEPTH levels) before it is parsed, so no input makes the parser recurse."""
    decoded = _decode_leaf(message)
    execution_id = getattr(decoded, "execution_id", None)
    if execution_id is not None and not _EXECUTION_ID.fullmatch(execution_id):
        raise MalformedError("execution id holds characters the service never issues")
    return decoded


def _decode_leaf(message: DeviceMessage) -> Any:
    if message.leaf == WAKE:  # a paced execution's own continuation (services/pacing.py), never a device's
        return decode_wake(message.payload)
    if message.leaf == "ack":
        return wire.decode_ack(message.payload)
    if message.leaf == "status":
        decoded = messages.decode_device(message.payload)
        if not isinstance(decoded, messages.Status | messages.Inventory):
            raise FormatError("only status and inventory messages belong on the status topic")
        return decoded
    if message.leaf == "get":
        peek = parse_json(message.payload, max_bytes=wire.MAX_CONTROL_MESSAGE, max_depth=wire.MAX_DEVICE_JSON_DEPTH)
        if isinstance(peek, dict) and peek.get("type") == "url":
            decoded = messages.decode_device(message.payload)
            if not isinstance(decoded, messages.UrlRefresh):
                raise FormatError("only block requests and url refreshes belong on the get topic")
            return decoded
        return wire.decode_request(message.payload)
    raise FormatError(f"topic leaf {message.leaf!r} is not handled by the job service")


def decode_safely(message: DeviceMessage) -> Any | None:
    """`decode`, with every failure logged and turned into None. Decoding is pure (no I/O), so any
    exception here is a property of the device's bytes, never of the infrastructure: drop, never retry."""
    try:
        return decode(message)
    except FormatError as err:
        reason = err.reason
    except Exception as err:  # a decoder bug on hostile input must not turn into redelivery of the batch
        reason = f"{type(err).__name__}: {str(err)[:200]}"
    log.warning("malformed device message dropped", extra={"epn": message.epn, "leaf": message.leaf, "reason": reason})
    return None


@dataclass
class _Tally:
    """Running counts of one batch, and the infrastructure failures per message id."""

    applied: int = 0
    ignored: int = 0
    malformed: int = 0
    sent: int = 0
    failures: dict[str, Exception] = field(default_factory=dict)

    def guarded(self, what: str, message_ids: Iterable[str], step: Callable[[], object]) -> bool:
        """Run one group's step; an exception fails that group's messages only. True if it succeeded."""
        ids = [i for i in message_ids if i not in self.failures]
        try:
            step()
        except Exception as err:  # DynamoDB, S3 or publisher trouble: redeliver this group, not the batch
            log.exception("device messages kept for redelivery", extra={"step": what, "messages": len(ids)})
            self.failures.update(dict.fromkeys(ids, err))
            return False
        return True

    def outcome(self) -> Outcome:
        return Outcome(applied=self.applied, ignored=self.ignored, malformed=self.malformed, blocks_sent=self.sent,
                       failures=dict(self.failures))


Group = list[tuple[DeviceMessage, Any]]


def handle_batch(
    repo: Repository, storage: Storage, publisher: Publisher, batch: list[DeviceMessage], cache: HotCache | None = None,
    pacing: Pacing | None = None, clock: Callable[[], float] | None = None, queue: FanoutQueue | None = None,
) -> Outcome:
    """Apply one SQS batch: decode every message (malformed ones dropped and counted), apply each
    execution's group with one conditional write, then inventories. A step that raises fails only the
    messages of its group (`Outcome.failures`); the other groups are applied all the same. With `pacing`,
    block sends stay within each device's budget and continue by wakes (services/pacing.py). Sends are
    stamped with `clock` when one is given (the handler's time: a backlog makes messages older than the
    sends they cause), else with the newest message's broker time. With the fan-out `queue`, an execution
    that ends its staged job's current wave moves the job on at once (services/waves.on_execution_ended)."""
    cache = cache or HotCache()
    tally = _Tally()
    results = [m for m in batch if m.leaf == "cmd/result"]  # remote commands: services/commands.py
    per_execution, inventories = _sort([m for m in batch if m.leaf != "cmd/result"], tally)
    if results:
        tally.guarded("command results", [m.message_id for m in results],
                      partial(_settle_results, repo, results, tally))
    failed_jobs: dict[str, tuple[float, list[str]]] = {}
    for execution_id, items in per_execution.items():
        tally.guarded("execution", [m.message_id for m, _ in items],
                      partial(_settle, repo, storage, publisher, cache, execution_id, items, tally, failed_jobs,
                              pacing, clock, queue))
    for job_id, (now, ids) in failed_jobs.items():
        tally.guarded("abort check", ids, partial(check_abort, repo, publisher, job_id, now))
    for epn, (message, inventory) in inventories.items():
        tally.guarded("inventory", [message.message_id],
                      partial(_settle_inventory, repo, storage, publisher, epn, inventory, message.received_at, tally))
    decoded_ids = [m.message_id for items in per_execution.values() for m, _ in items]
    tally.guarded("flush", decoded_ids + [m.message_id for m, _ in inventories.values()], publisher.flush)
    return tally.outcome()


def _sort(batch: list[DeviceMessage], tally: _Tally) -> tuple[dict[str, Group], dict[str, tuple[DeviceMessage, Any]]]:
    """Decode every message and group them per execution (and the latest inventory per device)."""
    per_execution: dict[str, Group] = defaultdict(list)
    inventories: dict[str, tuple[DeviceMessage, Any]] = {}
    for message in batch:
        decoded = decode_safely(message)
        if decoded is None:
            tally.malformed += 1
        elif isinstance(decoded, messages.Inventory):
            tally.ignored += message.epn in inventories  # an earlier inventory of the batch is superseded
            inventories[message.epn] = (message, decoded)
        else:
            per_execution[split_wire_id(decoded.execution_id)[0]].append((message, decoded))
    return per_execution, inventories


def _settle(
    repo: Repository, storage: Storage, publisher: Publisher, cache: HotCache, execution_id: str, items: Group,
    tally: _Tally, failed_jobs: dict[str, tuple[float, list[str]]], pacing: Pacing | None = None,
    clock: Callable[[], float] | None = None, queue: FanoutQueue | None = None,
) -> None:
    """Apply one execution's group (one write; paced: with its wake), send the blocks it freed
    (unicast), advance its group's broadcast if it is a member, republish its job document if asked."""
    seen = max(m.received_at for m, _ in items)
    applied = apply_messages(repo, cache, execution_id, items, pacing, clock() if clock is not None else None)
    if applied is None:
        tally.ignored += len(items)
        return
    execution, job = applied.execution, applied.job
    if execution.state in FAILURES:
        _, earlier = failed_jobs.get(job.job_id, (0.0, []))
        failed_jobs[job.job_id] = (execution.last_activity, earlier + [m.message_id for m, _ in items])
    sent = send_applied(publisher, storage, applied)
    sent += advance_group(repo, storage, publisher, cache, applied, clock() if clock is not None else seen, pacing)
    if applied.republish:
        package = cache.package(repo, job.upload_id)
        if package is not None:
            publish_job_document(publisher, storage, job, package, execution, execution.last_activity)
    if applied.ended and execution.wave is not None:
        try:
            waves.on_execution_ended(repo, publisher, job.job_id, execution.wave, clock() if clock else seen, queue)
        except Exception:  # the messages are applied: the next sweep takes the wave's step instead
            log.exception("wave step after an execution ended left to the sweeper", extra={"job_id": job.job_id})
    tally.applied += applied.changed
    tally.ignored += len(items) - applied.changed
    tally.sent += sent


def _settle_results(repo: Repository, results: list[DeviceMessage], tally: _Tally) -> None:
    done = command_service.record_results(repo, [(m.epn, m.payload, m.received_at) for m in results])
    tally.applied += done.applied
    tally.ignored += done.ignored
    tally.malformed += done.malformed


def _settle_inventory(
    repo: Repository, storage: Storage, publisher: Publisher, epn: str, inventory: messages.Inventory, now: float,
    tally: _Tally,
) -> None:
    sent_docs = _inventory(repo, storage, publisher, epn, inventory, now)
    tally.applied += 1
    log.info("inventory applied", extra={"epn": epn, "job_documents_republished": sent_docs})


def _inventory(
    repo: Repository, storage: Storage, publisher: Publisher, epn: str, inventory: messages.Inventory, now: float
) -> int:
    def update() -> bool:
        device = repo.get_device(epn)
        if device is None or device.state != "REGISTERED":
            return False
        repo.save_device(bumped(device, agent_version=inventory.agent_version, apps=dict(inventory.apps),
                                last_seen=now, channel=inventory.channel, auto_apps=tuple(inventory.auto)))
        return True

    if not retrying(update):
        log.warning("inventory from an unknown or deregistered device ignored", extra={"epn": epn})
        return 0
    count = 0
    for execution in repo.list_device_executions(epn):
        if execution.state not in ex.ACTIVE:
            continue
        job = repo.get_job(execution.job_id)
        job = delivered(job, execution) if job is not None else None  # the package this execution takes
        package = repo.get_package(job.upload_id) if job is not None else None
        if job is None or package is None or job.state != "ACTIVE":
            continue
        publish_job_document(publisher, storage, job, package, execution, now)
        count += 1
    count += command_service.republish_pending(repo, publisher, epn, now)
    return count + releases.on_inventory(repo, storage, publisher, epn, now)  # automatic updates
