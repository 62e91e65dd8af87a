"""In-memory repository with the same semantics as the DynamoDB one (contract tests, quick local runs);
the storage twin of S3 is in memory_storage.py (MemoryStorage, importable from here too).

Thread-safe: one lock makes each conditional write atomic. Listings page in the DynamoDB adapter's
order (a model's devices: shard, then EPN) with cursors of the same opacity and checks
(adapters/paging.py). Does not persist anything.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..domain.commands import ACTIVE as COMMAND_ACTIVE
from ..domain.errors import ConcurrentUpdate, Conflict
from ..domain.executions import ACTIVE, SKIPPED
from ..domain.models import CommandRun, Device, Execution, Group, Job, Package, PublisherKey, Release, RemoteCommand
from ..domain.ports import Page
from ..domain.waves import counter_moves
from .memory_storage import MemoryStorage
from .paging import decode, encode, model_shard

__all__ = ["MemoryRepository", "MemoryStorage"]

T = TypeVar("T")


def _when(created_at: float, ident: str) -> str:
    return f"{created_at:020.6f}#{ident}"


def _page(partition: str, items: Iterable[T], key: Callable[[T], str], limit: int, cursor: str | None) -> Page[T]:
    keyed = sorted(((key(i), i) for i in items), key=lambda kv: kv[0])
    if cursor is not None:
        after = decode(cursor, {"p", "k"}, {"p": partition})["k"]
        keyed = [kv for kv in keyed if kv[0] > after]
    more = len(keyed) > limit
    keyed = keyed[:limit]
    return Page(tuple(i for _, i in keyed), encode({"p": partition, "k": keyed[-1][0]}) if more and keyed else None)


class MemoryRepository:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], Any] = {}
        self._idem: dict[str, str] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._targets: dict[tuple[str, int], tuple[str, ...]] = {}
        self._members: dict[str, dict[int, tuple[str, ...]]] = {}  # staged jobs: first ordinal -> EPNs
        self._late: dict[str, set[str]] = {}
        self._waves: dict[tuple[str, int], Counter[str]] = {}
        self._command_counts: dict[str, Counter[str]] = {}

    def _create(self, kind: str, ident: str, entity: Any) -> None:
        with self._lock:
            if (kind, ident) in self._items:
                raise Conflict(f"{kind} {ident!r} already exists")
            self._items[(kind, ident)] = entity

    def _save(self, kind: str, ident: str, entity: Any) -> None:
        with self._lock:
            current = self._items.get((kind, ident))
            if current is None or current.version != entity.version - 1:
                raise ConcurrentUpdate(f"{kind} {ident} changed concurrently", current=current)
            self._items[(kind, ident)] = entity

    def _all(self, kind: str) -> list[Any]:
        with self._lock:
            return [v for (k, _), v in sorted(self._items.items(), key=lambda kv: kv[0]) if k == kind]

    def create_device(self, device: Device) -> None:
        self._create("device", device.epn, device)

    def get_device(self, epn: str) -> Device | None:
        return self._items.get(("device", epn))

    def save_device(self, device: Device) -> None:
        self._save("device", device.epn, device)

    def list_devices(self, model: str | None = None) -> list[Device]:
        return [d for d in self._all("device") if model is None or d.model == model]

    def devices_page(self, model: str | None, limit: int, cursor: str | None) -> Page[Device]:
        if model is None:
            return _page("DEVICES", self._all("device"), lambda d: d.epn, limit, cursor)
        return _page(f"MODEL#{model}", self.list_devices(model), lambda d: f"{model_shard(d.epn)}#{d.epn}",
                     limit, cursor)

    def get_devices(self, epns: Sequence[str]) -> list[Device | None]:
        return [self._items.get(("device", epn)) for epn in epns]

    def put_key(self, key: PublisherKey) -> None:
        self._create("key", key.key_id, key)

    def get_key(self, key_id: str) -> PublisherKey | None:
        return self._items.get(("key", key_id))

    def list_keys(self) -> list[PublisherKey]:
        return self._all("key")

    def delete_key(self, key_id: str) -> bool:
        with self._lock:
            return self._items.pop(("key", key_id), None) is not None

    def create_package(self, package: Package) -> None:
        self._create("package", package.upload_id, package)

    def get_package(self, upload_id: str) -> Package | None:
        return self._items.get(("package", upload_id))

    def save_package(self, package: Package) -> None:
        self._save("package", package.upload_id, package)

    def list_packages(self) -> list[Package]:
        return sorted(self._all("package"), key=lambda p: (p.created_at, p.upload_id))

    def packages_page(self, limit: int, cursor: str | None) -> Page[Package]:
        return _page("PACKAGES", self._all("package"), lambda p: _when(p.created_at, p.upload_id), limit, cursor)

    def packages_with_sha256(self, sha256: str) -> list[Package]:
        return sorted((p for p in self._all("package") if p.sha256 == sha256), key=lambda p: p.upload_id)

    def create_job(self, job: Job, executions: Sequence[Execution]) -> Job:
        with self._lock:
            if job.idempotency_key is not None:
                existing = self._idem.get(job.idempotency_key)
                if existing is not None:
                    return self._items[("job", existing)]
                self._idem[job.idempotency_key] = job.job_id
            if ("job", job.job_id) in self._items:
                raise Conflict(f"job {job.job_id!r} already exists")
            self._items[("job", job.job_id)] = job
        for execution in executions:
            self.create_execution(execution)
        return job

    def get_job(self, job_id: str) -> Job | None:
        return self._items.get(("job", job_id))

    def save_job(self, job: Job) -> None:
        self._save("job", job.job_id, job)

    def list_jobs(self) -> list[Job]:
        return sorted(self._all("job"), key=lambda j: (j.created_at, j.job_id))

    def jobs_page(self, limit: int, cursor: str | None) -> Page[Job]:
        return _page("JOBS", self._all("job"), lambda j: _when(j.created_at, j.job_id), limit, cursor)

    def continuous_jobs(self, model: str) -> list[Job]:
        return sorted((j for j in self._all("job") if j.state == "ACTIVE" and j.continuous
                       and j.target_spec.get("model") == model), key=lambda j: j.job_id)

    def put_job_targets(self, job_id: str, chunks: Sequence[Sequence[str]]) -> None:
        with self._lock:
            for n, chunk in enumerate(chunks):
                self._targets[(job_id, n)] = tuple(chunk)

    def get_job_targets(self, job_id: str, chunk: int) -> tuple[str, ...] | None:
        return self._targets.get((job_id, chunk))

    def job_counts(self, job_id: str) -> dict[str, int]:
        with self._lock:
            return dict(self._counts.get(job_id, Counter()))

    def add_job_counts(self, job_id: str, deltas: dict[str, int]) -> None:
        with self._lock:
            self._counts.setdefault(job_id, Counter()).update(deltas)

    def put_wave_members(self, job_id: str, first: int, epns: Sequence[str]) -> None:
        with self._lock:
            self._members.setdefault(job_id, {})[first] = tuple(epns)

    def wave_members(self, job_id: str, first: int, end: int) -> list[str]:
        with self._lock:
            items = sorted(self._members.get(job_id, {}).items())
        return [epn for start, epns in items for n, epn in enumerate(epns, start) if first <= n < end]

    def put_late_member(self, job_id: str, epn: str) -> None:
        with self._lock:
            self._late.setdefault(job_id, set()).add(epn)

    def late_members(self, job_id: str) -> list[str]:
        with self._lock:
            return sorted(self._late.get(job_id, ()))

    def wave_counts(self, job_id: str, first: int, end: int) -> dict[int, dict[str, int]]:
        with self._lock:
            return {w: dict(c) for (j, w), c in sorted(self._waves.items()) if j == job_id and first <= w < end}

    def _move_waves(self, job_id: str, before: tuple[str, int | None] | None, after: tuple[str, int | None]) -> None:
        for wave, deltas in counter_moves(before, after).items():
            self._waves.setdefault((job_id, wave), Counter()).update(deltas)

    def create_execution(self, execution: Execution) -> bool:
        with self._lock:
            job = self._items.get(("job", execution.job_id))
            if ("execution", execution.execution_id) in self._items or job is None or job.state != "ACTIVE":
                return False
            self._items[("execution", execution.execution_id)] = execution
            self._counts.setdefault(execution.job_id, Counter()).update(
                {"targets_resolved": 1, "executions_created": int(execution.state != SKIPPED), execution.state: 1,
                 "fallback_created": int(execution.package_id is not None)})
            self._move_waves(execution.job_id, None, (execution.state, execution.wave))
        return True

    def create_executions(self, executions: Sequence[Execution]) -> list[bool]:
        return [self.create_execution(e) for e in executions]

    def list_active_jobs(self) -> list[Job]:
        return [j for j in self.list_jobs() if j.state == "ACTIVE"]

    def list_active_executions(self) -> list[Execution]:
        return [e for e in self._all("execution") if e.state in ACTIVE]

    def get_execution(self, execution_id: str) -> Execution | None:
        return self._items.get(("execution", execution_id))

    def save_execution(self, execution: Execution) -> None:
        with self._lock:
            current = self._items.get(("execution", execution.execution_id))
            if current is None or current.version != execution.version - 1:
                raise ConcurrentUpdate(f"execution {execution.execution_id} changed concurrently", current=current)
            self._items[("execution", execution.execution_id)] = execution
            if current.state != execution.state:
                self._counts.setdefault(execution.job_id, Counter()).update({current.state: -1, execution.state: 1})
            self._move_waves(execution.job_id, (current.state, current.wave), (execution.state, execution.wave))

    def get_executions(self, execution_ids: Sequence[str]) -> list[Execution]:
        found = (self._items.get(("execution", i)) for i in dict.fromkeys(execution_ids))
        return [e for e in found if e is not None]

    def save_executions(self, changes: Sequence[tuple[Execution, Execution]]) -> list[bool]:
        saved = []
        for _, after in changes:
            try:
                self.save_execution(after)
            except ConcurrentUpdate:
                saved.append(False)
            else:
                saved.append(True)
        return saved

    def list_job_executions(self, job_id: str) -> list[Execution]:
        return sorted((e for e in self._all("execution") if e.job_id == job_id), key=lambda e: e.epn)

    def job_executions_page(self, job_id: str, limit: int, cursor: str | None) -> Page[Execution]:
        return _page(f"JOBEXEC#{job_id}", self.list_job_executions(job_id), lambda e: e.epn, limit, cursor)

    def list_device_executions(self, epn: str) -> list[Execution]:
        return sorted((e for e in self._all("execution") if e.epn == epn), key=lambda e: (e.created_at, e.execution_id))

    def device_executions_page(self, epn: str, limit: int, cursor: str | None) -> Page[Execution]:
        return _page(f"DEVEXEC#{epn}", self.list_device_executions(epn), lambda e: _when(e.created_at, e.execution_id),
                     limit, cursor)


    def create_command(self, command: RemoteCommand, runs: Sequence[CommandRun]) -> None:
        with self._lock:
            if ("command", command.command_id) in self._items:
                raise Conflict(f"command {command.command_id!r} already exists")
            self._items[("command", command.command_id)] = command
            for run in runs:
                self._items[("command-run", f"{run.command_id}#{run.epn}")] = run
            self._command_counts[command.command_id] = Counter(r.state for r in runs)

    def get_command(self, command_id: str) -> RemoteCommand | None:
        return self._items.get(("command", command_id))

    def list_commands(self) -> list[RemoteCommand]:
        return sorted(self._all("command"), key=lambda c: (c.created_at, c.command_id))

    def commands_page(self, limit: int, cursor: str | None) -> Page[RemoteCommand]:
        return _page("COMMANDS", self._all("command"), lambda c: _when(c.created_at, c.command_id), limit, cursor)

    def command_counts(self, command_id: str) -> dict[str, int]:
        with self._lock:
            return dict(self._command_counts.get(command_id, Counter()))

    def get_command_run(self, command_id: str, epn: str) -> CommandRun | None:
        return self._items.get(("command-run", f"{command_id}#{epn}"))

    def save_command_run(self, run: CommandRun) -> None:
        with self._lock:
            ident = ("command-run", f"{run.command_id}#{run.epn}")
            current = self._items.get(ident)
            if current is None or current.version != run.version - 1:
                raise ConcurrentUpdate(f"command-run {ident[1]} changed concurrently", current=current)
            self._items[ident] = run
            if current.state != run.state:
                self._command_counts.setdefault(run.command_id, Counter()).update({current.state: -1, run.state: 1})

    def list_command_runs(self, command_id: str) -> list[CommandRun]:
        return sorted((r for r in self._all("command-run") if r.command_id == command_id), key=lambda r: r.epn)

    def command_runs_page(self, command_id: str, limit: int, cursor: str | None) -> Page[CommandRun]:
        return _page(f"CMDRUNS#{command_id}", self.list_command_runs(command_id), lambda r: r.epn, limit, cursor)

    def list_device_command_runs(self, epn: str) -> list[CommandRun]:
        return sorted((r for r in self._all("command-run") if r.epn == epn), key=lambda r: (r.created_at, r.command_id))

    def device_command_runs_page(self, epn: str, limit: int, cursor: str | None) -> Page[CommandRun]:
        return _page(f"DEVCMD#{epn}", self.list_device_command_runs(epn), lambda r: _when(r.created_at, r.command_id),
                     limit, cursor)

    def list_active_command_runs(self) -> list[CommandRun]:
        return [r for r in self._all("command-run") if r.state in COMMAND_ACTIVE]


    def create_group(self, group: Group) -> None:
        self._create("group", group.group_id, group)

    def get_group(self, group_id: str) -> Group | None:
        return self._items.get(("group", group_id))

    def save_group(self, group: Group) -> None:
        self._save("group", group.group_id, group)

    def job_groups(self, job_id: str) -> list[Group]:
        return [g for g in self._all("group") if g.job_id == job_id]  # no TTL here: expired ones stay listed

    def create_release(self, release: Release) -> None:
        self._create("release", release.release_id, release)

    def list_releases(self) -> list[Release]:
        return sorted(self._all("release"), key=lambda r: (r.created_at, r.release_id))

    def releases_page(self, limit: int, cursor: str | None) -> Page[Release]:
        return _page("RELEASES", self._all("release"), lambda r: _when(r.created_at, r.release_id), limit, cursor)
