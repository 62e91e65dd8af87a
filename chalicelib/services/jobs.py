"""Job use cases: create (validated, idempotent, no downgrades), publish job documents, show, cancel.

One execution per target device. Creation with an Idempotency-Key is atomic in the repository: the
same key and body give the same job, the same key with another body is a conflict. Does not: send
blocks (services/delivery.py) or react to device messages (services/device_messages.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import Counter
from typing import Any

from otaformat import messages, topics, wire
from otaformat.canonical import canonical_json
from otaformat.ids import check_epn, check_model
from otaformat.versions import Version

from ..domain import executions as ex
from ..domain.errors import Conflict, InvalidInput, NotFound
from ..domain.group import offered as offered_group
from ..domain.models import Execution, Job, Package, TimelineEntry, bumped
from ..domain.ports import Publisher, Repository, Storage
from ..domain.retries import wire_id
from ..domain.window import MAX_TRANSFER_BLOCKS, Transfer
from .abort import cancel_executions, normalise_policy, policy_view
from .common import checked, integer, iso, retrying

DEFAULT_BLOCK_SIZE = 32 * 1024
DEFAULT_WINDOW = 64  # bench.transfer: 3x the goodput of 16 and 0.03 acks per block (16 gives 0.13)
MAX_WINDOW = 100  # IoT Core: at most 100 unacknowledged QoS 1 messages per connection
MAX_TARGETS = 1000
URL_SECONDS = 3600
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _normalise(body: dict[str, Any]) -> dict[str, Any]:
    allowed = {"package_id", "targets", "mode", "block_size", "window", "timeouts", "max_retries", "abort"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    package_id = body.get("package_id")
    if not isinstance(package_id, str) or not 1 <= len(package_id) <= 64:
        raise InvalidInput("field 'package_id' must be the upload id of an AVAILABLE package", field="package_id")
    targets = body.get("targets")
    if not isinstance(targets, dict) or len(targets) != 1 or not set(targets) <= {"devices", "model"}:
        raise InvalidInput("field 'targets' must be {\"devices\": [epn, ...]} or {\"model\": \"X\"}", field="targets")
    if "devices" in targets:
        devices = targets["devices"]
        if not isinstance(devices, list) or not 1 <= len(devices) <= MAX_TARGETS:
            raise InvalidInput(f"field 'targets.devices' must list 1..{MAX_TARGETS} EPN IDs", field="targets.devices")
        epns = [checked("targets.devices", check_epn, d) for d in devices]
        spec: dict[str, Any] = {"devices": sorted(set(epns))}
    else:
        spec = {"model": checked("targets.model", check_model, targets["model"])}
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
    return {"package_id": package_id, "targets": spec, "mode": mode, "block_size": block_size, "window": window,
            "timeouts": {"stall_seconds": stall, "total_seconds": total}, **normalise_policy(body)}


def _available(repo: Repository, upload_id: str) -> Package:
    package = repo.get_package(upload_id)
    if package is None:
        raise NotFound(f"field 'package_id': package {upload_id!r} does not exist", field="package_id")
    if package.state != "AVAILABLE" or package.app is None or package.version_label is None:
        raise Conflict(f"package {upload_id!r} is {package.state}, not AVAILABLE", field="package_id")
    return package


def _targets(repo: Repository, spec: dict[str, Any], package: Package) -> list[str]:
    if "devices" in spec:
        devices = [repo.get_device(epn) for epn in spec["devices"]]
        unknown = [epn for epn, d in zip(spec["devices"], devices, strict=True) if d is None]
        if unknown:
            raise NotFound(f"field 'targets.devices': unknown device(s) {', '.join(unknown[:10])}",
                           field="targets.devices")
        unregistered = [d.epn for d in devices if d is not None and d.state != "REGISTERED"]
        if unregistered:
            raise Conflict(f"field 'targets.devices': device(s) not registered {', '.join(unregistered[:10])}",
                           field="targets.devices")
    else:
        devices = [d for d in repo.list_devices(spec["model"]) if d.state == "REGISTERED"]
        if not devices:
            raise Conflict(f"field 'targets.model': no registered device of model {spec['model']!r}",
                           field="targets.model")
    problems = []
    new = Version.parse(package.version_label)
    for device in devices:
        assert device is not None
        if device.model not in package.models:
            problems.append(f"{device.epn} is model {device.model}, package is for {', '.join(package.models)}")
            continue
        installed = device.apps.get(package.app or "")
        if installed is not None and Version.parse(installed) > new:
            problems.append(f"{device.epn} has {package.app} {installed}, newer than {package.version_label} "
                            "(no downgrades)")
        elif package.is_delta and installed != package.base_version:
            has = f"{package.app} {installed}" if installed else f"no {package.app}"
            problems.append(f"{device.epn} has {has}, the delta needs {package.base_version}")
    if problems:
        raise Conflict("field 'targets': " + "; ".join(problems[:10]), field="targets")
    return sorted(d.epn for d in devices if d is not None)


def create_job(
    repo: Repository, storage: Storage, publisher: Publisher, now: float, body: Any, idempotency_key: str | None
) -> tuple[Job, bool]:
    """Create (or find, for a repeated Idempotency-Key) a job; returns (job, created)."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise InvalidInput("header 'Idempotency-Key' must be 1..128 characters of [A-Za-z0-9._:-]",
                           field="Idempotency-Key")
    normal = _normalise(body)
    body_sha = hashlib.sha256(canonical_json(normal)).hexdigest()
    package = _available(repo, normal["package_id"])
    epns = _targets(repo, normal["targets"], package)
    size = package.size or 0
    block_count = wire.block_count(size, normal["block_size"])
    if normal["mode"] == "block" and block_count > MAX_TRANSFER_BLOCKS:
        raise InvalidInput(f"field 'block_size': {block_count} blocks is more than {MAX_TRANSFER_BLOCKS}",
                           field="block_size")
    job = Job(job_id="job-" + secrets.token_hex(10), upload_id=package.upload_id, mode=normal["mode"],
              block_size=normal["block_size"], window=normal["window"],
              stall_seconds=normal["timeouts"]["stall_seconds"], total_seconds=normal["timeouts"]["total_seconds"],
              targets=tuple(epns), target_spec=normal["targets"], state="ACTIVE", created_at=now,
              app=package.app or "", app_version=package.version_label or "", package_size=size,
              package_sha256=package.sha256 or "", repository_key=package.repository_key or "",
              block_count=block_count, body_sha256=body_sha, idempotency_key=idempotency_key,
              max_retries=normal["max_retries"], abort_percent=normal["abort"]["failure_threshold_percent"],
              abort_min_executed=normal["abort"]["min_executed"])
    executions = [
        Execution(execution_id="ex-" + secrets.token_hex(8), job_id=job.job_id, epn=epn, state=ex.QUEUED,
                  stream=wire.new_stream(), mode=job.mode, created_at=now, last_activity=now,
                  timeline=(TimelineEntry(at=now, state=ex.QUEUED, reason="job created"),))
        for epn in epns
    ]
    stored = repo.create_job(job, executions)
    if stored.job_id != job.job_id:
        if stored.body_sha256 != body_sha:
            raise Conflict("Idempotency-Key was already used with a different body", field="Idempotency-Key")
        return stored, False
    for execution in executions:
        publish_job_document(publisher, storage, job, package, execution, now)
    publisher.flush()
    return job, True


def job_document(storage: Storage, job: Job, package: Package, execution: Execution, now: float) -> bytes:
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
    get_job(repo, job_id)
    cancel_executions(repo, publisher, repo.list_job_executions(job_id), now, "canceled by operator")
    publisher.flush()

    def mark() -> Job:
        current = get_job(repo, job_id)
        if current.state == "CANCELED":
            return current
        canceled = bumped(current, state="CANCELED")
        repo.save_job(canceled)
        return canceled

    return retrying(mark)


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


def job_view(job: Job, executions: list[Execution]) -> dict[str, Any]:
    counts = Counter(e.state for e in executions)
    done = sum(bytes_done(job, e) for e in executions)
    total = job.package_size * len(executions)
    state = job.state
    if state == "ACTIVE" and executions and all(ex.is_terminal(e.state) for e in executions):
        state = "COMPLETED"
    return {
        "job_id": job.job_id, "state": state, "package_id": job.upload_id, "mode": job.mode,
        "block_size": job.block_size, "block_count": job.block_count, "window": job.window,
        "timeouts": {"stall_seconds": job.stall_seconds, "total_seconds": job.total_seconds},
        "app": job.app, "version": job.app_version, "targets": list(job.targets), "created_at": iso(job.created_at),
        "counts": {s: counts.get(s, 0) for s in ex.STATES}, "bytes_done": done, "bytes_total": total,
        "percent": round(100.0 * done / total, 1) if total else 100.0, **policy_view(job),
    }


def execution_view(job: Job, execution: Execution) -> dict[str, Any]:
    transfer = execution.transfer or Transfer(total=job.block_count, window=job.window)
    done = bytes_done(job, execution)
    return {
        "execution_id": execution.execution_id, "job_id": execution.job_id, "epn": execution.epn,
        "state": execution.state, "step": execution.step, "mode": execution.mode, "attempt": execution.attempt,
        "blocks_acked": blocks_done(job, execution), "blocks_total": job.block_count,
        "blocks_sent": transfer.sent_count, "retransmissions": transfer.retransmissions,
        "bytes_done": done, "bytes_total": job.package_size,
        "percent": round(100.0 * done / job.package_size, 1) if job.package_size else 100.0,
        "note": execution.note,
        "last_activity": iso(execution.last_activity),
        "timeline": [
            {"at": iso(t.at), "state": t.state, "step": t.step, "reason": t.reason} for t in execution.timeline
        ],
    }
