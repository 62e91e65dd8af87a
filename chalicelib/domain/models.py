"""Frozen values of the control plane: devices, publisher keys, packages, jobs, executions.

Each entity carries `version`, the optimistic-concurrency counter the repositories check on save
(version 1 = created; saving writes `version` on condition that the stored one is `version - 1`).
`to_record` / `from_record` give a JSON-safe dict for the adapters. No I/O.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .window import Transfer

DEVICE_STATES = ("PREAUTHORIZED", "REGISTERED", "DEREGISTERED")
PACKAGE_STATES = ("PENDING", "AVAILABLE", "REJECTED", "RETIRED")
JOB_STATES = ("ACTIVE", "COMPLETED", "CANCELED", "ABORTED")


@dataclass(frozen=True)
class Device:
    epn: str
    model: str
    state: str
    token_sha256: str
    token_expires: float
    created_at: float
    registered_at: float | None = None
    agent_version: str | None = None
    apps: dict[str, str] = field(default_factory=dict)
    certificate_id: str | None = None
    certificate_arn: str | None = None
    certificate_pem: str | None = None
    public_key_sha256: str | None = None
    last_seen: float | None = None
    channel: str | None = None  # automatic updates, from the device's inventory: the channel it follows
    auto_apps: tuple[str, ...] = ()  # and the apps it installs releases of automatically
    version: int = 1


@dataclass(frozen=True)
class PublisherKey:
    key_id: str
    name: str
    public_key_pem: str
    created_at: float
    version: int = 1


@dataclass(frozen=True)
class Package:
    upload_id: str
    state: str
    declared_size: int
    created_at: float
    reasons: tuple[str, ...] = ()
    package_id: str | None = None
    app: str | None = None
    version_label: str | None = None
    kind: str | None = None
    models: tuple[str, ...] = ()
    is_delta: bool = False
    base_version: str | None = None
    expires: str | None = None
    size: int | None = None
    sha256: str | None = None
    repository_key: str | None = None
    key_id: str | None = None
    envelope: dict[str, Any] | None = None
    scanner: str | None = None
    scanned_at: float | None = None
    staging_etag: str | None = None  # ETag of the staging object version this decision judged
    replaces: str | None = None  # set on a replacement's record: the upload slot whose object was replaced
    declared_sha256: str | None = None  # the SHA-256 the slot was opened for; other bytes are REJECTED
    version: int = 1
    # uploads made straight into the staging bucket (services/incoming.py); None on API upload slots
    source: str | None = None  # "s3" for an `incoming/` object; None (shown as "api") for an upload slot
    uploaded_by: str | None = None  # the S3 event's userIdentity.principalId of the PUT that was judged
    staging_key: str | None = None  # the `incoming/...` key the judged object was read from
    staging_version: str | None = None  # 16 hex naming that object version (key, ETag, Last-Modified)


@dataclass(frozen=True)
class Job:
    job_id: str
    upload_id: str
    mode: str
    block_size: int
    window: int
    stall_seconds: int
    total_seconds: int
    targets: tuple[str, ...]
    target_spec: dict[str, Any]
    state: str
    created_at: float
    app: str
    app_version: str
    package_size: int
    package_sha256: str
    repository_key: str
    block_count: int
    body_sha256: str = ""
    idempotency_key: str | None = None
    max_retries: int = 0
    abort_percent: int = 50
    abort_min_executed: int = 10
    # fleet scale (issue 13): asynchronous fan-out; `targets` stays () for such jobs (nothing in the job
    # item grows with the fleet), an explicit list lives in `target_chunks` chunk items
    target_count: int = 0  # explicit list: its length; model target: 0 (fan-out completion is a counter)
    target_chunks: int = 0
    continuous: bool = False  # model target: devices registered later get an execution too
    all_or_nothing: bool = False
    # a delta job's fallback (domain/fallback.py): the full package of the same version that devices off
    # the delta's base take instead of being SKIPPED, and its delivery fields (as the job's own above)
    fallback_upload_id: str | None = None
    fallback_size: int = 0
    fallback_sha256: str = ""
    fallback_repository_key: str = ""
    fallback_block_count: int = 0
    # staged waves (issue 13, domain/waves.py): wave_size 0 and wave_percent 0 = not staged
    wave_size: int = 0  # devices per wave; a percent job's is set when its fan-out is done
    wave_percent: int = 0
    wave_gate: str = ""  # "pause" (after the previous wave finished) or "interval" (after it started)
    wave_delay: int = 0  # its seconds
    waves_total: int = 0  # 0 while the fan-out is still counting the targets
    current_wave: int = -1  # the last wave started (-1: none yet)
    wave_started_at: float | None = None  # when the current wave started
    wave_finished_at: float | None = None  # when the sweeper first saw every execution of it terminal
    pace_ms: int = 0  # block mode, paced deployment: the job document's `pace_ms` (services/pacing.py)
    version: int = 1


@dataclass(frozen=True)
class TimelineEntry:
    at: float
    state: str
    step: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Execution:
    execution_id: str
    job_id: str
    epn: str
    state: str
    stream: int
    mode: str
    created_at: float
    last_activity: float
    step: str | None = None
    last_seq: int = -1
    timeline: tuple[TimelineEntry, ...] = ()
    transfer: Transfer | None = None
    started_at: float | None = None
    attempt: int = 0
    progress: int = 0  # blocks the device says it holds (status `progress`), monotonic, <= block_count
    note: str | None = None  # an anomaly the cloud recorded but did not believe (see domain/executions.py)
    package_id: str | None = None  # the package it takes when not the job's own: its delta job's fallback
    wave: int | None = None  # staged job: its wave (a percent job's WAITING ones get it when released)
    released_at: float | None = None  # staged job: when its wave started (its timers count from then)
    version: int = 1


@dataclass(frozen=True)
class RemoteCommand:
    """A signed remote command as the operator submitted it (the envelope is kept verbatim: the cloud
    cannot sign, it only forwards) and the devices it was sent to (domain/commands.py)."""

    command_id: str
    type: str
    envelope: dict[str, Any]
    key_id: str
    targets: tuple[str, ...]
    target_spec: dict[str, Any]
    created_at: float
    expires_at: float
    timeout: int
    version: int = 1


@dataclass(frozen=True)
class CommandRun:
    """One device's delivery of a command: QUEUED, DELIVERED, RUNNING, then SUCCEEDED, FAILED, REJECTED
    or TIMED_OUT (sticky), with what the device said (exit code, reason, bounded output)."""

    command_id: str
    epn: str
    state: str
    created_at: float
    last_activity: float
    expires_at: float
    timeout: int
    started_at: float | None = None
    last_seq: int = -1
    exit_code: int | None = None
    reason: str | None = None
    output: str | None = None
    truncated: bool = False
    timeline: tuple[TimelineEntry, ...] = ()
    version: int = 1


@dataclass(frozen=True)
class Release:
    """An operator's decision that `app` `version` (an AVAILABLE full package) is what devices of `model`
    following `channel` should run (services/releases.py)."""

    release_id: str  # "<app>@<version>:<model>:<channel>"
    app: str
    app_version: str
    model: str
    channel: str
    upload_id: str
    created_at: float
    version: int = 1


@dataclass(frozen=True)
class Group:
    """Group delivery of one job to the devices of one model (domain/group.py, docs/protocol.md 15): the
    broadcast cursor (blocks below `next_index` went out on the group topic) and when recent ones did."""

    group_id: str  # "<job_id>.<model>", or "<job_id>.<model>.w<wave>" for a wave of a staged job
    job_id: str
    model: str
    stream: int
    total: int
    window: int
    created_at: float
    next_index: int = 0
    broadcasts: int = 0  # blocks published on the group topic (each reaches every member)
    recent: tuple[tuple[int, int, float], ...] = ()  # (first, end, at) of recent broadcasts, newest last
    expires_at: float | None = None  # set when its job ended: the store may delete the record after this
    wave: int | None = None  # staged job: the wave whose members share this broadcast
    paced: tuple[tuple[float, int, int], ...] = ()  # broadcasts of the last second (domain/pacing.py Ledger)
    wake_at: float = 0.0  # when the group's scheduled continuation is due (0: none; services/groups.py)
    version: int = 1


E = TypeVar("E", Device, PublisherKey, Package, Job, Execution, RemoteCommand, CommandRun, Release, Group)


def bumped(entity: E, **changes: Any) -> E:
    """The entity with `changes` applied and its version advanced by one (what `save` expects)."""
    return replace(entity, version=entity.version + 1, **changes)


def to_record(entity: Any) -> dict[str, Any]:
    """JSON-safe dict of an entity: tuples become lists, bytes become {"b64": ...}."""
    return {f.name: _plain(getattr(entity, f.name)) for f in dataclasses.fields(entity)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_record(value)
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def from_record(cls: type[E], record: dict[str, Any]) -> E:
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in record:
            continue
        value = record[f.name]
        if f.name == "timeline":
            value = tuple(TimelineEntry(**entry) for entry in value)
        elif f.name == "transfer" and value is not None:
            value = Transfer.from_record(value)
        elif f.name == "recent":
            value = tuple((int(a), int(b), float(c)) for a, b, c in value)
        elif f.name == "paced":
            value = tuple((float(a), int(m), int(b)) for a, m, b in value)
        elif f.name == "wake_at":
            value = float(value)
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)
