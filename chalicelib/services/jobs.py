"""Job use cases: create (validated, idempotent), publish job documents, show, cancel.

Creation checks the body, the package and (explicit lists) that every device exists and is registered,
stores the job without its target list and queues the fan-out (services/fanout.py), which creates one
execution per target in the background: QUEUED, or SKIPPED with the reason when the device cannot take
the package (ahead, another model, not on the delta's base). With `all_or_nothing` such a device
refuses the whole job (409) before anything is stored. Creation with an Idempotency-Key is atomic in the
repository: the same key and body give the same job, the same key with another body is a conflict.
Does not: send blocks (services/delivery.py) or react to device messages (services/device_messages.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Any

from otaformat import messages, topics, wire
from otaformat.canonical import canonical_json
from otaformat.ids import check_epn, check_model

from ..domain import executions as ex
from ..domain import fallback as fallback_rules
from ..domain.errors import Conflict, InvalidInput, NotFound
from ..domain.group import offered as offered_group
from ..domain.models import Execution, Job, Package, bumped
from ..domain.ports import FanoutQueue, Publisher, Repository, Storage
from ..domain.retries import wire_id
from ..domain.window import MAX_TRANSFER_BLOCKS, Transfer
from . import fanout, groups, waves
from .abort import cancel_executions, normalise_policy, policy_view
from .common import checked, integer, iso, retrying

DEFAULT_BLOCK_SIZE = 32 * 1024
DEFAULT_WINDOW = 64  # bench.transfer: 3x the goodput of 16 and 0.03 acks per block (16 gives 0.13)
MAX_WINDOW = 100  # IoT Core: at most 100 unacknowledged QoS 1 messages per connection
MAX_TARGETS = 10_000  # EPNs in an explicit list (stored as chunk items, not in the job item)
MAX_BODY = 1 << 20  # a POST /jobs body: room for MAX_TARGETS EPN IDs of 64 characters
EXACT_BYTES_EXECUTIONS = 200  # up to this many executions the job view sums their bytes; beyond, from counters
URL_SECONDS = 3600
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _normalise(body: dict[str, Any]) -> dict[str, Any]:
    allowed = {"package_id", "targets", "mode", "block_size", "window", "timeouts", "max_retries", "abort",
               "all_or_nothing", "fallback_package_id", "waves"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    package_id = body.get("package_id")
    if not isinstance(package_id, str) or not 1 <= len(package_id) <= 64:
        raise InvalidInput("field 'package_id' must be the upload id of an AVAILABLE package", field="package_id")
    fallback = body.get("fallback_package_id")
    if fallback is not None and (not isinstance(fallback, str) or not 1 <= len(fallback) <= 64):
        raise InvalidInput("field 'fallback_package_id' must be the upload id of an AVAILABLE full package",
                           field="fallback_package_id")
    staged = waves.normalise(body)
    targets = body.get("targets")
    if not isinstance(targets, dict) or set(targets) not in ({"devices"}, {"model"}, {"model", "continuous"}):
        raise InvalidInput("field 'targets' must be {\"devices\": [epn, ...]} or {\"model\": \"X\", \"continuous\"?: "
                           "true|false}", field="targets")
    if "devices" in targets:
        devices = targets["devices"]
        if not isinstance(devices, list) or not 1 <= len(devices) <= MAX_TARGETS:
            raise InvalidInput(f"field 'targets.devices' must list 1..{MAX_TARGETS} EPN IDs", field="targets.devices")
        epns = [checked("targets.devices", check_epn, d) for d in devices]
        # a staged job's waves follow the list's order (duplicates dropped); otherwise the order is irrelevant
        spec: dict[str, Any] = {"devices": list(dict.fromkeys(epns)) if staged else sorted(set(epns))}
    else:
        spec = {"model": checked("targets.model", check_model, targets["model"])}
    waves.job_fields(staged, len(spec["devices"]) if "devices" in spec else None, 0.0)  # at most MAX_WAVES
    mode = body.get("mode", "block")
    if mode not in messages.MODES:
        raise InvalidInput("field 'mode' must be 'block' or 'url'", field="mode")
    block_size = body.get("block_size", DEFAULT_BLOCK_SIZE)
    checked("block_size", wire.check_block_size, block_size)
    window = integer(body, "window", 1, MAX_WINDOW, DEFAULT_WINDOW)
    timeouts = body.get("timeouts", {})
    if not isinstance(timeouts, dict) or not set(timeouts) <= {"stall_seconds", "total_seconds"}:
        raise InvalidInput("field 'timeouts' must be {\"stall_seconds\", \"total_seconds\"}", field="timeouts")
    stall = integer(timeouts, "stall_seconds", 5, 86400, 300, parent="timeouts")
    total = integer(timeouts, "total_seconds", 60, 30 * 86400, 7 * 86400, parent="timeouts")
    flags = {"all_or_nothing": body.get("all_or_nothing", False), "continuous": targets.get("continuous", False)}
    for name, where in (("all_or_nothing", "all_or_nothing"), ("continuous", "targets.continuous")):
        if not isinstance(flags[name], bool):
            raise InvalidInput(f"field {where!r} must be true or false", field=where)
    named = {"fallback_package_id": fallback} if fallback is not None else {}  # absent: the body hash of before
    return {**flags, **named, "package_id": package_id, "targets": spec, "mode": mode, "block_size": block_size,
            "window": window, "timeouts": {"stall_seconds": stall, "total_seconds": total}, **normalise_policy(body),
            **({"waves": staged} if staged else {})}


def _available(repo: Repository, upload_id: str, field: str = "package_id") -> Package:
    package = repo.get_package(upload_id)
    if package is None:
        raise NotFound(f"field {field!r}: package {upload_id!r} does not exist", field=field)
    if package.state != "AVAILABLE" or package.app is None or package.version_label is None:
        raise Conflict(f"package {upload_id!r} is {package.state}, not AVAILABLE", field=field)
    return package


def _fallback(repo: Repository, normal: dict[str, Any], package: Package) -> Package | None:
    """The delta job's fallback package, checked (domain/fallback.py), or None when the body names none."""
    upload_id = normal.get("fallback_package_id")
    if upload_id is None:
        return None
    fallback_rules.check_delta(package)
    found = _available(repo, upload_id, "fallback_package_id")
    fallback_rules.check_pair(package, found)
    return found


def _any_registered(repo: Repository, model: str) -> bool:
    cursor = None
    while True:
        page = repo.devices_page(model, 100, cursor)
        if any(d.state == "REGISTERED" for d in page.items):
            return True
        if page.next_cursor is None:
            return False
        cursor = page.next_cursor


def _check_targets(repo: Repository, spec: dict[str, Any], package: Package, all_or_nothing: bool,
                   continuous: bool, fallback: Package | None = None) -> None:
    """Refuse what cannot start: unknown or unregistered devices in an explicit list, a model with no
    registered device (unless continuous), a fallback not for every targeted model; with all_or_nothing,
    any target that would be SKIPPED."""
    if "devices" in spec:
        devices = repo.get_devices(spec["devices"])
        unknown = [epn for epn, d in zip(spec["devices"], devices, strict=True) if d is None]
        if unknown:
            raise NotFound(f"field 'targets.devices': unknown device(s) {', '.join(unknown[:10])}",
                           field="targets.devices")
        unregistered = [d.epn for d in devices if d is not None and d.state != "REGISTERED"]
        if unregistered:
            raise Conflict(f"field 'targets.devices': device(s) not registered {', '.join(unregistered[:10])}",
                           field="targets.devices")
    else:
        # all_or_nothing: every device of the model is checked before anything is stored; otherwise one
        # registered device is enough to start (the fan-out reads the rest), none at all for a continuous job
        devices = [d for d in repo.list_devices(spec["model"]) if d.state == "REGISTERED"] if all_or_nothing else []
        if not continuous and not (devices if all_or_nothing else _any_registered(repo, spec["model"])):
            raise Conflict(f"field 'targets.model': no registered device of model {spec['model']!r}",
                           field="targets.model")
    if fallback is not None:
        fallback_rules.check_covers(package, fallback, [spec["model"]] if "model" in spec else
                                    [d.model for d in devices if d is not None])
    if all_or_nothing:
        problems = [why.replace("device", d.epn, 1) for d in devices if d is not None
                    for why in [fanout.choose(d, package, fallback)[1]] if why]
        if problems:
            raise Conflict("field 'targets': " + "; ".join(problems[:10]), field="targets")


def create_job(
    repo: Repository, storage: Storage, publisher: Publisher, now: float, body: Any, idempotency_key: str | None,
    queue: FanoutQueue | None = None, pace_ms: int = 0,
) -> tuple[Job, bool]:
    """Create (or find, for a repeated Idempotency-Key) a job; returns (job, created). Its fan-out goes to
    `queue`; without one (automatic updates: one device) it runs here, before returning."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise InvalidInput("header 'Idempotency-Key' must be 1..128 characters of [A-Za-z0-9._:-]",
                           field="Idempotency-Key")
    normal = _normalise(body)
    body_sha = hashlib.sha256(canonical_json(normal)).hexdigest()
    package = _available(repo, normal["package_id"])
    fallback = _fallback(repo, normal, package)
    _check_targets(repo, normal["targets"], package, normal["all_or_nothing"], normal["continuous"], fallback)
    epns = normal["targets"].get("devices")
    size = package.size or 0
    block_count = wire.block_count(size, normal["block_size"])
    extra = fallback_rules.job_fields(fallback, normal["block_size"]) if fallback is not None else {}
    most = max(block_count, extra.get("fallback_block_count", 0))
    if normal["mode"] == "block" and most > MAX_TRANSFER_BLOCKS:
        raise InvalidInput(f"field 'block_size': {most} blocks is more than {MAX_TRANSFER_BLOCKS}",
                           field="block_size")
    job = Job(job_id="job-" + secrets.token_hex(10), upload_id=package.upload_id, mode=normal["mode"],
              block_size=normal["block_size"], window=normal["window"],
              stall_seconds=normal["timeouts"]["stall_seconds"], total_seconds=normal["timeouts"]["total_seconds"],
              targets=(), target_spec={"model": normal["targets"]["model"]} if epns is None else {},
              target_count=len(epns or ()), continuous=normal["continuous"],
              all_or_nothing=normal["all_or_nothing"], state="ACTIVE", created_at=now,
              app=package.app or "", app_version=package.version_label or "", package_size=size,
              package_sha256=package.sha256 or "", repository_key=package.repository_key or "",
              block_count=block_count, body_sha256=body_sha, idempotency_key=idempotency_key,
              max_retries=normal["max_retries"], abort_percent=normal["abort"]["failure_threshold_percent"],
              abort_min_executed=normal["abort"]["min_executed"], **extra,
              pace_ms=pace_ms if normal["mode"] == "block" else 0,
              **waves.job_fields(normal.get("waves"), None if epns is None else len(epns), now))
    stored = repo.create_job(job, ())
    if stored.job_id != job.job_id:
        if stored.body_sha256 != body_sha:
            raise Conflict("Idempotency-Key was already used with a different body", field="Idempotency-Key")
        return stored, False
    fanout.start(repo, queue or InlineFanout(repo, storage, publisher, now), job, epns)
    return job, True


class InlineFanout:
    """The fan-out run here and now (a job created inside another use case, e.g. an automatic update)."""

    def __init__(self, repo: Repository, storage: Storage, publisher: Publisher, now: float) -> None:
        self._args = (repo, storage, publisher)
        self._now = now

    def send(self, messages: Sequence[dict[str, Any]]) -> None:
        for message in messages:
            fanout.handle(*self._args, self, self._now, message)


def job_document(storage: Storage, job: Job, package: Package, execution: Execution, now: float) -> bytes:
    """The execution's job document; `package` is the one it takes (its job's, or the fallback's)."""
    job = fallback_rules.delivered(job, execution)
    url = url_expires = None
    if job.mode == "url":
        url = storage.download_url(job.repository_key, URL_SECONDS)
        url_expires = iso(now + URL_SECONDS)
    doc = messages.JobDocument(
        job_id=job.job_id, execution_id=wire_id(execution), epn=execution.epn, stream=execution.stream,
        mode=job.mode, envelope=package.envelope or {}, package_size=job.package_size,
        package_sha256=job.package_sha256, block_size=job.block_size, block_count=job.block_count,
        window=job.window, url=url, url_expires=url_expires, stall_timeout=job.stall_seconds,
        group=offered_group(job, package, execution),  # group delivery (docs/protocol.md section 15)
        pace_ms=job.pace_ms,  # paced deployment: how far apart bursts of blocks may come (section 7)
    )
    return messages.encode(doc)


def publish_job_document(
    publisher: Publisher, storage: Storage, job: Job, package: Package, execution: Execution, now: float
) -> None:
    publisher.publish(topics.topic(execution.epn, "job"), job_document(storage, job, package, execution, now))


def get_job(repo: Repository, job_id: str) -> Job:
    job = repo.get_job(job_id) if isinstance(job_id, str) and len(job_id) <= 64 else None
    if job is None:
        raise NotFound(f"job {job_id!r} does not exist", field="job_id")
    return job


def cancel_job(repo: Repository, publisher: Publisher, now: float, job_id: str) -> Job:
    """The job CANCELED first (from then on the fan-out creates nothing: create_execution is conditional
    on an ACTIVE job), then every execution it has; repeating it cancels what a failure left live."""
    get_job(repo, job_id)

    def mark() -> Job:
        current = get_job(repo, job_id)
        if current.state == "CANCELED":
            return current
        canceled = bumped(current, state="CANCELED")
        repo.save_job(canceled)
        return canceled

    job = retrying(mark)
    cancel_executions(repo, publisher, repo.list_job_executions(job_id), now, "canceled by operator")
    publisher.flush()
    groups.expire(repo, job_id, now)
    return job


def blocks_done(job: Job, execution: Execution) -> int:
    """Blocks that really reached the device, as far as the cloud knows. Block mode: blocks the cloud
    sent and the device acknowledged (never more, whatever the device's status claims). URL mode: the
    device's reported `progress` (bounded, monotonic; everything once it verifies, installs or
    succeeds; 0 while QUEUED, as a retried attempt starts again)."""
    if job.mode == "block":
        return execution.transfer.acked_count if execution.transfer is not None else 0
    return 0 if execution.state == ex.QUEUED else min(job.block_count, execution.progress)


def bytes_done(job: Job, execution: Execution) -> int:
    blocks = blocks_done(job, execution)
    if blocks >= job.block_count:
        return job.package_size
    return min(job.package_size, blocks * job.block_size)


def finished(job: Job, made: dict[str, Any]) -> bool:
    """By its counters (fanout.progress): every target resolved and terminal (none WAITING for its wave
    either). A continuous job never is: it stays ACTIVE for the devices still to come."""
    return (not job.continuous and made["fanout_done"] and made["targets_resolved"] > 0
            and not any(made["counts"].get(s) for s in ex.UNFINISHED))


def job_view(repo: Repository, job: Job) -> dict[str, Any]:
    """The job with its progress from its counters; bytes summed over the executions while there are at
    most EXACT_BYTES_EXECUTIONS of them, else counted whole for SUCCEEDED ones only (`bytes_exact`)."""
    made = fanout.progress(repo, job)
    counts = made["counts"]
    created = sum(counts.get(s, 0) for s in ex.STATES if s != ex.SKIPPED)
    exact = created <= EXACT_BYTES_EXECUTIONS
    fallbacks = made.get("fallback_created", 0)
    if exact:  # each execution through the package it takes (a delta job's fallback: the full package)
        live = [(fallback_rules.delivered(job, e), e) for e in repo.list_job_executions(job.job_id)
                if e.state != ex.SKIPPED]
        done = sum(bytes_done(j, e) for j, e in live)
        total = sum(j.package_size for j, _ in live)
    else:
        done = counts[ex.SUCCEEDED] * job.package_size
        total = job.package_size * (created - fallbacks) + job.fallback_size * fallbacks
    state = job.state
    if state == "ACTIVE" and finished(job, made):
        state = "COMPLETED"
    spec = {"model": job.target_spec["model"]} if "model" in job.target_spec else {
        "devices": job.target_count or len(job.targets)}
    return {
        "job_id": job.job_id, "state": state, "package_id": job.upload_id, "mode": job.mode,
        "block_size": job.block_size, "block_count": job.block_count, "window": job.window,
        "timeouts": {"stall_seconds": job.stall_seconds, "total_seconds": job.total_seconds},
        "app": job.app, "version": job.app_version, "target_spec": spec, "continuous": job.continuous,
        "all_or_nothing": job.all_or_nothing, "created_at": iso(job.created_at),
        "fallback_package_id": job.fallback_upload_id, "fallback_executions": fallbacks,
        "targets_resolved": made["targets_resolved"], "executions_created": made["executions_created"],
        "fanout_done": made["fanout_done"],
        "counts": counts, "bytes_done": done, "bytes_total": total, "bytes_exact": exact,
        "percent": round(100.0 * done / total, 1) if total else (100.0 if made["fanout_done"] else 0.0),
        **policy_view(job), "waves": waves.view(repo, job),
    }


def execution_view(job: Job, execution: Execution) -> dict[str, Any]:
    """One execution, measured against the package it takes (`package_id`; `fallback` when that is its
    delta job's fallback, domain/fallback.py)."""
    fallback = fallback_rules.takes_fallback(job, execution)
    job = fallback_rules.delivered(job, execution)
    transfer = execution.transfer or Transfer(total=job.block_count, window=job.window)
    done = bytes_done(job, execution)
    return {
        "execution_id": execution.execution_id, "job_id": execution.job_id, "epn": execution.epn,
        "state": execution.state, "step": execution.step, "mode": execution.mode, "attempt": execution.attempt,
        "package_id": job.upload_id, "fallback": fallback, "wave": execution.wave,
        "blocks_acked": blocks_done(job, execution), "blocks_total": job.block_count,
        "blocks_sent": transfer.sent_count, "retransmissions": transfer.retransmissions,
        "bytes_done": done, "bytes_total": job.package_size,
        "percent": round(100.0 * done / job.package_size, 1) if job.package_size else 100.0,
        "note": execution.note,
        "reason": execution.timeline[-1].reason if ex.is_terminal(execution.state) and execution.timeline else None,
        "last_activity": iso(execution.last_activity),
        "timeline": [
            {"at": iso(t.at), "state": t.state, "step": t.step, "reason": t.reason} for t in execution.timeline
        ],
    }
