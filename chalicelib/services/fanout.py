"""Job fan-out: a job's targets expanded and its executions created in the background, in bounded
batches (issue 13), so POST /jobs answers at once whatever the fleet's size.

Work items (FanoutQueue messages, SQS `fanout` queue in production):
- `{"job_id", "chunk": n}`: chunk n of an explicit target list (CHUNK EPNs, stored as its own item);
- `{"job_id", "model", "cursor"}`: one page (BATCH devices) of the model's index; handling it queues
  the next page's message, and the last page counts `fanout_complete` on the job.
Each target becomes one execution whose id is derived from job and EPN (`execution_id`): creation is a
conditional put, so a redelivered message creates nothing twice; its job document is published when it
is created, and again on redelivery while it is still QUEUED (at least once; devices take duplicate
documents of one execution as QoS 1 requires). A target found ineligible (not registered, another
model, already newer, not on the delta's base) gets a SKIPPED execution with the reason (terminal,
never sent, never a failure), except that a delta job's fallback goes to a device only off the delta's
base (`choose`, domain/fallback.py). No execution is created once the job is no longer ACTIVE (the
repository's create_execution is conditional on it), so a cancel during a batch leaves nothing live.
Progress is in the job's counters (repository `job_counts`).
Staged jobs (services/waves.py): the items run one after another (each queues the next with the
`offset` of its first eligible target), an execution whose wave has not started is created WAITING and
not sent, the last item counts the waves; `{"job_id", "wave", "from"}` items release a started wave.
Does not: check the request (services/jobs.py does before anything is queued) or send blocks.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from otaformat import wire
from otaformat.versions import Version

from ..domain import executions as ex
from ..domain.fallback import delivered, off_base
from ..domain.models import Device, Execution, Job, Package, TimelineEntry
from ..domain.ports import FanoutQueue, Publisher, Repository, Storage
from ..domain.waves import staged
from . import wave_release, waves

log = logging.getLogger(__name__)
BATCH = 100  # devices per model page message
CHUNK = 100  # EPNs per explicit-list chunk item and message


def execution_id(job_id: str, epn: str) -> str:
    return "ex-" + hashlib.sha256(f"{job_id}#{epn}".encode()).hexdigest()[:16]


def ineligible(device: Device | None, package: Package) -> str | None:
    """Why `device` cannot take `package` (no downgrades, right model, the delta's base), or None."""
    if device is None or device.state != "REGISTERED":
        return "device is not registered"
    if device.model not in package.models:
        return f"device is model {device.model}, package is for {', '.join(package.models)}"
    installed = device.apps.get(package.app or "")
    if installed is not None and package.version_label and Version.parse(installed) > Version.parse(
            package.version_label):
        return f"device has {package.app} {installed}, newer than {package.version_label} (no downgrades)"
    if package.is_delta and installed != package.base_version:
        has = f"{package.app} {installed}" if installed else f"no {package.app}"
        return f"device has {has}, the delta needs {package.base_version}"
    return None


def choose(device: Device | None, package: Package, fallback: Package | None) -> tuple[Package, str | None]:
    """The package `device` takes and, if none, why: the job's own; a delta job's fallback when the
    device is ineligible for the delta only because it is off the delta's base (domain/fallback.py)."""
    reason = ineligible(device, package)
    if (reason is not None and fallback is not None and device is not None and off_base(device, package)
            and ineligible(device, fallback) is None):
        return fallback, None
    return package, reason


def start(repo: Repository, queue: FanoutQueue, job: Job, epns: list[str] | None) -> None:
    """Queue the fan-out of a stored job: chunks of its explicit list, or the first page of its model
    (a staged job: only the first chunk or page, with offset 0; each queues the next)."""
    first = waves.Placement(job, 0).next_offset()
    if epns is not None:
        chunks = [epns[n : n + CHUNK] for n in range(0, len(epns), CHUNK)]
        repo.put_job_targets(job.job_id, chunks)
        queue.send([{"job_id": job.job_id, "chunk": n, **first} for n in range(1 if first else len(chunks))])
    else:
        queue.send([{"job_id": job.job_id, "model": job.target_spec["model"], "cursor": None, **first}])


def handle(repo: Repository, storage: Storage, publisher: Publisher, queue: FanoutQueue, now: float,
           message: dict[str, Any], batch: int = BATCH) -> int:
    """One work item; returns how many executions it created. Malformed items are logged and dropped."""
    job = repo.get_job(str(message.get("job_id")))
    if job is None or job.state != "ACTIVE":
        return 0  # canceled or aborted meanwhile: nothing more to send
    package = repo.get_package(job.upload_id)
    if package is None:
        log.error("fan-out: the job's package is gone", extra={"job_id": job.job_id})
        return 0
    chunk = message.get("chunk")
    offset = message.get("offset")
    placement = waves.Placement(job, offset if isinstance(offset, int) and not isinstance(offset, bool) else 0)
    if "wave" in message:
        created = wave_release.handle_release(repo, storage, publisher, queue, job, package, message, now)
    elif isinstance(chunk, int) and not isinstance(chunk, bool):
        epns = repo.get_job_targets(job.job_id, chunk) or ()
        created = fan_out(repo, storage, publisher, now, job, package, list(zip(epns, repo.get_devices(epns),
                                                                                strict=True)), placement)
        if placement.staged and (chunk + 1) * CHUNK < job.target_count:
            queue.send([{"job_id": job.job_id, "chunk": chunk + 1, **placement.next_offset()}])
        elif placement.staged:
            waves.fanout_finished(repo, queue, job.job_id, placement.end, now)
    elif message.get("model") == job.target_spec.get("model"):
        cursor = message.get("cursor")
        page = repo.devices_page(job.target_spec["model"], batch, cursor if isinstance(cursor, str) else None)
        targets = [(d.epn, d) for d in page.items if d.state == "REGISTERED"]
        created = fan_out(repo, storage, publisher, now, job, package, targets, placement)
        if page.next_cursor is not None:
            queue.send([{**message, "cursor": page.next_cursor, **placement.next_offset()}])
        else:
            repo.add_job_counts(job.job_id, {"fanout_complete": 1})
            if placement.staged:
                waves.fanout_finished(repo, queue, job.job_id, placement.end, now)
    else:
        log.warning("fan-out item dropped", extra={"job_id": job.job_id, "item": str(message)[:200]})
        return 0
    publisher.flush()
    return created


def fan_out(repo: Repository, storage: Storage, publisher: Publisher, now: float, job: Job, package: Package,
            targets: Sequence[tuple[str, Device | None]], placement: waves.Placement | None = None) -> int:
    """Create (once) each target's execution, QUEUED and its document published, or SKIPPED with why (a
    staged job's: WAITING, not sent, while its wave has not started; `placement` gives the waves)."""
    from .jobs import publish_job_document  # jobs imports this module

    placement = placement or waves.Placement(job, None)
    fallback = repo.get_package(job.fallback_upload_id) if job.fallback_upload_id else None
    created = 0
    planned = []
    for epn, device in targets:
        use, reason = choose(device, package, fallback)
        state, wave = (ex.SKIPPED, None) if reason else placement.place(epn)
        why = reason or ("job created" if use is package else f"job created: {ineligible(device, package)}, so "
                         f"the full package {use.upload_id}")
        if state == ex.WAITING:
            why += "; waits for its wave to start"
        planned.append(Execution(
            execution_id=execution_id(job.job_id, epn), job_id=job.job_id, epn=epn, state=state,
            stream=wire.new_stream(), mode=job.mode, created_at=now, last_activity=now, wave=wave,
            released_at=now if wave is not None and state == ex.QUEUED else None,
            timeline=(TimelineEntry(at=now, state=state, reason=why),),
            package_id=None if use is package else use.upload_id))
    # one write per page where the store allows; False too once the job is no longer ACTIVE (canceled meanwhile)
    for execution, made in zip(planned, repo.create_executions(planned), strict=True):
        if made:
            created += 1
            placement.created(execution)
        else:
            stored = repo.get_execution(execution.execution_id)
            if stored is None or stored.state != ex.QUEUED or stored.attempt:
                continue
            execution = stored
        taken = package if execution.package_id is None else fallback
        if execution.state == ex.QUEUED and taken is not None:
            publish_job_document(publisher, storage, delivered(job, execution), taken, execution, now)
    placement.finish(repo, storage, publisher, package, now)
    return created


def progress(repo: Repository, job: Job) -> dict[str, Any]:
    """The job's fan-out progress and per-state counts, from its counters (no execution is read; WAITING
    only for a staged job)."""
    counts = repo.job_counts(job.job_id)
    if job.targets:  # a job made before the fan-out: its executions were created with it, maybe uncounted
        done = True
        if not counts:
            counts = dict(Counter(e.state for e in repo.list_job_executions(job.job_id)))
            counts["targets_resolved"] = sum(counts.values())
            counts["executions_created"] = counts["targets_resolved"] - counts.get(ex.SKIPPED, 0)
    elif "model" in job.target_spec:
        done = counts.get("fanout_complete", 0) > 0
    else:
        done = counts.get("targets_resolved", 0) >= job.target_count
    return {"targets_resolved": counts.get("targets_resolved", 0),
            "executions_created": counts.get("executions_created", 0), "fanout_done": done,
            "fallback_created": counts.get("fallback_created", 0),
            "counts": {s: max(0, counts.get(s, 0)) for s in ex.STATES if s != ex.WAITING or staged(job)}}


def on_registered(repo: Repository, storage: Storage, publisher: Publisher, now: float, epn: str) -> int:
    """A device just registered: every ACTIVE continuous job of its model fans out to it too (its job
    document is published again on its first inventory, once it is connected). Returns executions made."""
    device = repo.get_device(epn)
    if device is None or device.state != "REGISTERED":
        return 0
    created = 0
    for job in repo.continuous_jobs(device.model):
        package = repo.get_package(job.upload_id)
        if package is not None and job.state == "ACTIVE":
            created += fan_out(repo, storage, publisher, now, job, package, [(epn, device)])
    if created:
        publisher.flush()
    return created
