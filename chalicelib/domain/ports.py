"""Ports: what the use cases need from the outside world, as Protocols. Adapters implement them.

Repository saves are optimistic: `save_*` writes an entity whose `version` was advanced by one
(models.bumped) on condition that the stored version is one less, else raises ConcurrentUpdate;
`create_*` raises Conflict when the key exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .models import CommandRun, Device, Execution, Group, Job, Package, PublisherKey, Release, RemoteCommand

Clock = Callable[[], float]
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its items in the listing's stable order and the opaque cursor of the next
    page (None at the end). A cursor is only valid for the listing that gave it out (else InvalidInput)."""

    items: tuple[T, ...]
    next_cursor: str | None = None


class WakeQueue(Protocol):
    """Where a paced execution's continuation goes: `body` delivered to the device-message handler after
    `delay_seconds` (SQS DelaySeconds on the device-message queue; a manual queue in tests)."""

    def wake(self, body: dict[str, Any], delay_seconds: int) -> None: ...


class FanoutQueue(Protocol):
    """Where a job's background fan-out work goes (SQS `fanout` queue; in memory for tests)."""

    def send(self, messages: Sequence[dict[str, Any]]) -> None: ...


class Repository(Protocol):
    def create_device(self, device: Device) -> None: ...
    def get_device(self, epn: str) -> Device | None: ...
    def save_device(self, device: Device) -> None: ...
    def list_devices(self, model: str | None = None) -> list[Device]:
        """Every device (of `model`): internal whole-list helper, iterates pages."""
        ...
    def devices_page(self, model: str | None, limit: int, cursor: str | None) -> Page[Device]:
        """Devices by EPN; of one model: through the model's sharded index (shard, then EPN order)."""
        ...
    def get_devices(self, epns: Sequence[str]) -> list[Device | None]:
        """The devices named (None where unknown), in the order asked; batched reads."""
        ...

    def put_key(self, key: PublisherKey) -> None: ...
    def get_key(self, key_id: str) -> PublisherKey | None: ...
    def list_keys(self) -> list[PublisherKey]: ...
    def delete_key(self, key_id: str) -> bool: ...

    def create_package(self, package: Package) -> None: ...
    def get_package(self, upload_id: str) -> Package | None: ...
    def save_package(self, package: Package) -> None: ...
    def list_packages(self) -> list[Package]: ...
    def packages_page(self, limit: int, cursor: str | None) -> Page[Package]:
        """Packages by creation time, then upload id."""
        ...
    def packages_with_sha256(self, sha256: str) -> list[Package]:
        """Packages whose verified bytes have this SHA-256 (through a key made for it, not a scan)."""
        ...

    def create_job(self, job: Job, executions: Sequence[Execution]) -> Job:
        """Store job and executions; with job.idempotency_key set, return the job already stored under
        that key instead (atomically: of concurrent creates with one key exactly one is stored)."""
        ...

    def get_job(self, job_id: str) -> Job | None: ...
    def save_job(self, job: Job) -> None: ...
    def list_jobs(self) -> list[Job]: ...
    def jobs_page(self, limit: int, cursor: str | None) -> Page[Job]:
        """Jobs by creation time, then job id."""
        ...
    def continuous_jobs(self, model: str) -> list[Job]:
        """ACTIVE jobs with `continuous` set whose target is `model` (through a key made for it)."""
        ...
    def put_job_targets(self, job_id: str, chunks: Sequence[Sequence[str]]) -> None:
        """Store an explicit target list as numbered chunk items (nothing grows inside the job item)."""
        ...
    def get_job_targets(self, job_id: str, chunk: int) -> tuple[str, ...] | None: ...
    def create_execution(self, execution: Execution) -> bool:
        """Store a new execution unless its id exists (the id is derived from job and EPN, so a redelivered
        fan-out batch creates nothing twice) or its job is not ACTIVE (stored and ACTIVE at the moment of
        the write: nothing is created for a job canceled meanwhile); True if it was created. Counts it in
        the job's counters (`targets_resolved`, `executions_created` unless SKIPPED, its state, and
        `fallback_created` when it takes its delta job's fallback) in the same write."""
        ...
    def create_executions(self, executions: Sequence[Execution]) -> list[bool]:
        """create_execution of each, in as few writes as the store allows (a fan-out page); one result each."""
        ...
    def job_counts(self, job_id: str) -> dict[str, int]:
        """The job's counters: targets_resolved, executions_created, fanout_complete and one per
        execution state (kept by create_execution and save_execution; 0 when absent)."""
        ...
    def add_job_counts(self, job_id: str, deltas: dict[str, int]) -> None: ...
    def put_wave_members(self, job_id: str, first: int, epns: Sequence[str]) -> None:
        """Staged job: the eligible targets of one fan-out item, in order, holding the ordinals first,
        first + 1, ... (overwriting the same item again on redelivery)."""
        ...
    def wave_members(self, job_id: str, first: int, end: int) -> list[str]:
        """The EPNs stored with an ordinal in [first, end), in ordinal order (reads only those items)."""
        ...
    def put_late_member(self, job_id: str, epn: str) -> None:
        """Staged job: a device of a continuous job registered before any wave started (joins wave 0)."""
        ...
    def late_members(self, job_id: str) -> list[str]: ...
    def wave_counts(self, job_id: str, first: int, end: int) -> dict[int, dict[str, int]]:
        """Per-state counters of waves first..end-1 (only waves with counters appear), kept by
        create_execution and save_execution for executions with a `wave` (domain/waves.counter_moves)."""
        ...
    def list_active_jobs(self) -> list[Job]:
        """Jobs in state ACTIVE only (the sweeper's work list; cost follows live jobs, not history)."""
        ...

    def get_execution(self, execution_id: str) -> Execution | None: ...
    def save_execution(self, execution: Execution) -> None:
        """Optimistic save; a change of state moves one count between the job's per-state counters."""
        ...
    def get_executions(self, execution_ids: Sequence[str]) -> list[Execution]:
        """The stored ones of `execution_ids`, in as few reads as the store allows (absent ones left out)."""
        ...
    def save_executions(self, changes: Sequence[tuple[Execution, Execution]]) -> list[bool]:
        """save_execution of each (as read, to store) whose execution is still as read, in as few writes as
        the store allows (a wave's release); one result each, False where the execution changed meanwhile."""
        ...
    def list_job_executions(self, job_id: str) -> list[Execution]: ...
    def job_executions_page(self, job_id: str, limit: int, cursor: str | None) -> Page[Execution]:
        """A job's executions by EPN."""
        ...
    def list_device_executions(self, epn: str) -> list[Execution]: ...
    def device_executions_page(self, epn: str, limit: int, cursor: str | None) -> Page[Execution]:
        """A device's executions by creation time, then execution id."""
        ...
    def list_active_executions(self) -> list[Execution]:
        """Executions in QUEUED or IN_PROGRESS only, of every job (the sweeper's work list)."""
        ...

    def create_command(self, command: RemoteCommand, runs: Sequence[CommandRun]) -> None:
        """Store a command and its runs, and its per-state counters (command_counts); Conflict if its id
        exists (a replayed submission)."""
        ...

    def get_command(self, command_id: str) -> RemoteCommand | None: ...
    def list_commands(self) -> list[RemoteCommand]: ...
    def commands_page(self, limit: int, cursor: str | None) -> Page[RemoteCommand]:
        """Commands by creation time, then command id."""
        ...
    def command_counts(self, command_id: str) -> dict[str, int]:
        """The command's runs per state (kept by create_command and save_command_run; {} for a command
        stored before the counters existed)."""
        ...
    def get_command_run(self, command_id: str, epn: str) -> CommandRun | None: ...
    def save_command_run(self, run: CommandRun) -> None:
        """Optimistic save; a change of state moves one count between the command's per-state counters."""
        ...
    def list_command_runs(self, command_id: str) -> list[CommandRun]: ...
    def command_runs_page(self, command_id: str, limit: int, cursor: str | None) -> Page[CommandRun]:
        """A command's runs by EPN."""
        ...
    def list_device_command_runs(self, epn: str) -> list[CommandRun]: ...
    def device_command_runs_page(self, epn: str, limit: int, cursor: str | None) -> Page[CommandRun]:
        """A device's command runs by creation time, then command id."""
        ...
    def list_active_command_runs(self) -> list[CommandRun]:
        """Runs in QUEUED, DELIVERED or RUNNING only (the sweeper's work list)."""
        ...

    def create_release(self, release: Release) -> None:
        """Conflict if a release with this id exists."""
        ...

    def list_releases(self) -> list[Release]: ...
    def releases_page(self, limit: int, cursor: str | None) -> Page[Release]:
        """Releases by creation time, then release id."""
        ...

    def create_group(self, group: Group) -> None:
        """Conflict if a group with this id exists (group delivery, services/groups.py)."""
        ...

    def get_group(self, group_id: str) -> Group | None: ...
    def save_group(self, group: Group) -> None:
        """Optimistic save; a group with `expires_at` is deleted by the store some time after it (TTL)."""
        ...
    def job_groups(self, job_id: str) -> list[Group]:
        """Every group record of the job (to expire them when it ends)."""
        ...


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1."""
        ...

    def flush(self) -> None:
        """Wait until everything published so far is acknowledged by the broker."""
        ...


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str
    certificate_id: str | None = None
    certificate_arn: str | None = None


class CertificateSigner(Protocol):
    def sign(self, epn: str, csr_pem: str) -> IssuedCertificate: ...
    def ca_pem(self) -> str: ...
    def revoke(self, certificate_pem: str) -> None: ...


class DeviceRegistry(Protocol):
    def register(self, epn: str, model: str, issued: IssuedCertificate) -> IssuedCertificate:
        """Register the certificate (if the signer did not), create the thing, attach policy and principal."""
        ...

    def deregister(self, epn: str, certificate_id: str | None, certificate_arn: str | None) -> None: ...


@dataclass(frozen=True)
class StagedObject:
    """One version of a staging object as it was read: its ETag (the S3 object version identity the
    judgement is recorded against), its full size, and its bytes when size <= the limit asked for
    (None otherwise: an oversized upload is never read past the limit). The bytes are a read-only
    bytes-like buffer: `bytes`, or (S3) an mmap of the object spooled to an unlinked temporary file, so
    a large upload is not held in the heap; compare with bytes(data), search with find()."""

    etag: str
    size: int
    data: bytes | None
    key: str | None = None  # its key in the staging bucket (`uploads/<id>` or `incoming/...`)
    modified: str | None = None  # its Last-Modified as the store gave it (tells re-uploads of one key apart)


class RepositoryIntegrityError(RuntimeError):
    """The repository key already holds other bytes than the ones being published (its name carries
    their SHA-256, so this is corruption or tampering): nothing is overwritten, the caller fails."""


class Storage(Protocol):
    """Staging (uploads, mutable through their presigned PUT URL until it expires) and the repository
    (content-addressed keys, written once, never overwritten)."""

    def upload_url(self, upload_id: str, size: int, expires_seconds: int) -> str: ...
    def staging_etag(self, upload_id: str) -> str | None:
        """The current ETag of `uploads/<upload_id>` (None while absent), without reading it."""
        ...
    def read_staging(self, upload_id: str, limit: int) -> StagedObject | None:
        """The current staging object, bytes and ETag from ONE read (so the ETag names these bytes);
        None while absent. Never reads more than limit + 1 bytes."""
        ...
    def publish(self, repository_key: str, data: bytes, sha256: str) -> None:
        """Write exactly `data` (whose SHA-256 hex is `sha256`) to the repository key, only if the key
        is absent; the store verifies the SHA-256 of what it received. If the key exists it must hold
        the same SHA-256 (idempotent retry), else RepositoryIntegrityError and nothing is written."""
        ...
    def read_incoming(self, key: str, limit: int) -> StagedObject | None:
        """The current object at `key` under `incoming/` (uploads made straight into the staging bucket),
        like read_staging: bytes, ETag and Last-Modified from ONE read; None while absent."""
        ...
    def download_url(self, repository_key: str, expires_seconds: int) -> str: ...
    def read_range(self, repository_key: str, start: int, length: int) -> bytes: ...


class ScanPending(RuntimeError):
    """The malware engine has no verdict on this object version yet (e.g. GuardDuty has not tagged it):
    nothing is decided now; the caller asks again later, and fails closed after its last attempt."""


class MalwareScanner(Protocol):
    name: str  # shown as `scanner` in every package view: says which engine decided (or that none did)

    def scan(self, data: bytes, manifest: Any, content: bytes | None, obj: StagedObject | None = None) -> list[str]:
        """Reasons to reject (empty when clean); `content` is the verified unpacked content, `obj` the
        staging object version `data` was read from (engines that scan the stored object need it).
        Raises ScanPending while the engine has no verdict yet."""
        ...
