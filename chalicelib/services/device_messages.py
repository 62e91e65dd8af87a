"""Device messages (what the IoT topic rule forwards): status, inventory, acks, block and URL requests.

A batch is grouped per execution: every message of one execution is applied in memory, then one
conditional write saves the result, then the blocks it freed are sent. Duplicated, reordered and late
messages change nothing (sticky terminal states, sequence numbers, idempotent ack bitmap). Malformed
messages are logged and dropped, never retried. An inventory updates the device and republishes the
job documents of its unfinished executions (a device that was offline gets its job when it returns).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from otaformat import messages, wire
from otaformat.errors import FormatError

from ..domain import executions as ex
from ..domain.errors import ConcurrentUpdate
from ..domain.models import Execution, Job, bumped
from ..domain.ports import Publisher, Repository, Storage
from ..domain.retries import FAILURES, can_retry, retry, split_wire_id
from .abort import check_abort
from .common import retrying
from .delivery import ACK_TIMEOUT_SECONDS, ensure_transfer, send_blocks
from .jobs import publish_job_document

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceMessage:
    epn: str
    leaf: str
    payload: bytes
    received_at: float


class HotCache:
    """Per-container memory of jobs (their delivery fields never change) and of the executions this
    container saved last. A cached execution may be stale: every save is conditional, and a lost race
    drops the entry and reloads, so the cache only saves reads, never decides anything."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.jobs: dict[str, Job] = {}
        self.executions: dict[str, Execution] = {}
        self._lock = threading.Lock()

    def execution(self, execution_id: str) -> Execution | None:
        return self.executions.get(execution_id)

    def forget(self, execution_id: str) -> None:
        with self._lock:
            self.executions.pop(execution_id, None)

    def remember(self, execution: Execution) -> None:
        with self._lock:
            if len(self.executions) >= self.limit:
                self.executions.pop(next(iter(self.executions)))
            self.executions[execution.execution_id] = execution

    def job(self, repo: Repository, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            job = repo.get_job(job_id)
            if job is not None:
                with self._lock:
                    if len(self.jobs) >= self.limit:
                        self.jobs.pop(next(iter(self.jobs)))
                    self.jobs[job_id] = job
        return job


@dataclass(frozen=True)
class Outcome:
    applied: int = 0
    ignored: int = 0
    malformed: int = 0
    blocks_sent: int = 0


def decode(message: DeviceMessage) -> Any:
    """Typed message (Status, Inventory, Ack, BlockRequest, UrlRefresh) or raise FormatError."""
    if message.leaf == "ack":
        return wire.decode_ack(message.payload)
    if message.leaf == "status":
        decoded = messages.decode(message.payload, max_bytes=messages.MAX_STATUS_MESSAGE)
        if not isinstance(decoded, messages.Status | messages.Inventory):
            raise FormatError("only status and inventory messages belong on the status topic")
        return decoded
    if message.leaf == "get":
        try:
            kind = json.loads(message.payload).get("type")
        except (ValueError, AttributeError):
            kind = None
        if kind == "url":
            return messages.decode(message.payload, max_bytes=wire.MAX_CONTROL_MESSAGE)
        return wire.decode_request(message.payload)
    raise FormatError(f"topic leaf {message.leaf!r} is not handled by the job service")


def handle_batch(
    repo: Repository, storage: Storage, publisher: Publisher, batch: list[DeviceMessage], cache: HotCache | None = None
) -> Outcome:
    cache = cache or HotCache()
    per_execution: dict[str, list[tuple[DeviceMessage, Any]]] = defaultdict(list)
    inventories: dict[str, tuple[DeviceMessage, messages.Inventory]] = {}
    malformed = 0
    for message in batch:
        if message.leaf == "cmd/result":
            log.info("command result ignored by the job service", extra={"epn": message.epn})
            continue
        try:
            decoded = decode(message)
        except FormatError as err:
            malformed += 1
            log.warning("malformed device message dropped",
                        extra={"epn": message.epn, "leaf": message.leaf, "reason": getattr(err, "reason", str(err))})
            continue
        if isinstance(decoded, messages.Inventory):
            inventories[message.epn] = (message, decoded)
        else:
            per_execution[split_wire_id(decoded.execution_id)[0]].append((message, decoded))
    applied = ignored = sent = 0
    failed_jobs: dict[str, float] = {}
    for execution_id, items in per_execution.items():
        result = retrying(partial(_apply, repo, cache, execution_id, items))
        if result is None:
            ignored += len(items)
            continue
        execution, job, blocks, republish, changed = result
        applied += changed
        ignored += len(items) - changed
        if execution.state in FAILURES:
            failed_jobs[job.job_id] = execution.last_activity
        if blocks:
            sent += send_blocks(publisher, storage, job, execution, blocks)
        if republish:
            package = repo.get_package(job.upload_id)
            if package is not None:
                publish_job_document(publisher, storage, job, package, execution, execution.last_activity)
    for job_id, now in failed_jobs.items():
        check_abort(repo, publisher, job_id, now)
    for epn, (message, inventory) in inventories.items():
        sent_docs = _inventory(repo, storage, publisher, epn, inventory, message.received_at)
        applied += 1
        log.info("inventory applied", extra={"epn": epn, "job_documents_republished": sent_docs})
    publisher.flush()
    return Outcome(applied=applied, ignored=ignored, malformed=malformed, blocks_sent=sent)


def _apply(
    repo: Repository, cache: HotCache, execution_id: str, items: list[tuple[DeviceMessage, Any]]
) -> tuple[Execution, Job, list[int], bool, int] | None:
    cached = cache.execution(execution_id)
    original = cached or repo.get_execution(execution_id)
    if cached is not None and any(split_wire_id(d.execution_id)[1] > cached.attempt for _, d in items):
        original = repo.get_execution(execution_id)  # retried elsewhere (sweeper): the cache is behind
    if original is None or original.epn != items[0][0].epn:
        log.warning("message for an unknown execution or another device ignored",
                    extra={"execution_id": execution_id, "epn": items[0][0].epn})
        return None
    job = cache.job(repo, original.job_id)
    if job is None:
        return None
    execution = original
    blocks: list[int] = []
    republish = False
    changed = 0
    block_mode = job.mode == "block"
    for message, decoded in items:
        now = message.received_at
        if ex.is_terminal(execution.state):
            log.info("message after a terminal state ignored",
                     extra={"execution_id": execution_id, "state": execution.state, "leaf": message.leaf})
            continue
        if split_wire_id(decoded.execution_id)[1] != execution.attempt:
            log.info("message of an earlier attempt ignored",
                     extra={"execution_id": execution_id, "attempt": execution.attempt, "leaf": message.leaf})
            continue
        if isinstance(decoded, messages.Status):
            moved = ex.apply_status(execution, decoded.state, decoded.step, decoded.reason, decoded.seq, now)
            if moved is None:
                log.info("stale or duplicate status ignored", extra={"execution_id": execution_id, "seq": decoded.seq})
                continue
            execution = moved
            if moved.state == ex.FAILED and can_retry(moved, job, decoded.reason):
                execution = retry(moved, now, decoded.reason, wire.new_stream())
                republish = True
                log.info("execution retried", extra={"execution_id": execution_id, "attempt": execution.attempt})
            elif block_mode and decoded.state == ex.IN_PROGRESS and decoded.step == "DOWNLOADING":
                execution = replace(execution, transfer=ensure_transfer(execution, job))
        elif isinstance(decoded, messages.UrlRefresh):
            republish = job.mode == "url"
            execution = ex.touch(execution, now)
        elif block_mode and decoded.stream == execution.stream:
            transfer = ensure_transfer(execution, job)
            if isinstance(decoded, wire.Ack):
                transfer, _ = transfer.ack(decoded.received(job.block_count), now)
            else:
                transfer, resend = transfer.plan_requested(decoded.wanted(job.block_count), now, ACK_TIMEOUT_SECONDS)
                blocks.extend(resend)
            execution = replace(ex.touch(execution, now), transfer=transfer,
                                started_at=execution.started_at or now)
        else:
            log.info("ack or request for another stream or mode ignored", extra={"execution_id": execution_id})
            continue
        changed += 1
    if block_mode and execution.transfer is not None and not ex.is_terminal(execution.state):
        transfer, fresh = execution.transfer.plan_new(max(m.received_at for m, _ in items))
        execution = replace(execution, transfer=transfer)
        blocks.extend(fresh)
    if execution == original:
        return execution, job, [], republish, changed
    saved = bumped(execution)
    try:
        repo.save_execution(saved)
    except ConcurrentUpdate:
        cache.forget(execution_id)
        raise
    cache.remember(saved)
    return saved, job, blocks, republish, changed


def _inventory(
    repo: Repository, storage: Storage, publisher: Publisher, epn: str, inventory: messages.Inventory, now: float
) -> int:
    def update() -> bool:
        device = repo.get_device(epn)
        if device is None or device.state != "REGISTERED":
            return False
        repo.save_device(bumped(device, agent_version=inventory.agent_version, apps=dict(inventory.apps),
                                last_seen=now))
        return True

    if not retrying(update):
        log.warning("inventory from an unknown or deregistered device ignored", extra={"epn": epn})
        return 0
    count = 0
    for execution in repo.list_device_executions(epn):
        if execution.state not in ex.ACTIVE:
            continue
        job = repo.get_job(execution.job_id)
        package = repo.get_package(job.upload_id) if job is not None else None
        if job is None or package is None or job.state != "ACTIVE":
            continue
        publish_job_document(publisher, storage, job, package, execution, now)
        count += 1
    return count
