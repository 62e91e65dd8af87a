"""A delta job's fallback package (issue 13), pure rules: which pair of packages may be combined, which
device takes the full package instead of being SKIPPED, and the job as one execution delivers it.

A delta job may name `fallback_package_id`: an AVAILABLE full package of the same app and the same
version as the delta's target, for every targeted model the delta is for. At fan-out a device that
cannot take the delta ONLY because it is not on the delta's base (another version older than the
target, or no such app at all) gets an execution of the fallback (`Execution.package_id`); every other
reason (not registered, another model, already on the target or newer) stays SKIPPED.

Everything that sends or checks an execution's package reads it through `delivered(job, execution)`:
the job with the fallback's size, SHA-256, repository key and block count in place of the delta's.
Such an execution is unicast only: it never joins the delta's broadcast group (domain/group.py).
No I/O: services/jobs.py loads the packages, services/fanout.py applies `off_base`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from otaformat import wire
from otaformat.versions import Version

from .errors import Conflict, InvalidInput
from .models import Device, Execution, Job, Package

FIELD = "fallback_package_id"


def check_delta(package: Package) -> None:
    """400 unless the job's package is a delta (only a delta job may name a fallback)."""
    if not package.is_delta:
        raise InvalidInput(f"field {FIELD!r}: only a delta job may name a fallback; package "
                           f"{package.upload_id!r} is a full package", field=FIELD)


def check_pair(package: Package, fallback: Package) -> None:
    """400 unless `package` is a delta and `fallback` a full package of the same app and version."""
    check_delta(package)
    if fallback.is_delta:
        raise InvalidInput(f"field {FIELD!r}: package {fallback.upload_id!r} is a delta; the fallback must be "
                           "a full package", field=FIELD)
    if fallback.app != package.app or fallback.version_label != package.version_label:
        raise InvalidInput(f"field {FIELD!r}: package {fallback.upload_id!r} is {fallback.app} "
                           f"{fallback.version_label}, the delta makes {package.app} {package.version_label}",
                           field=FIELD)


def check_covers(package: Package, fallback: Package, models: Iterable[str]) -> None:
    """409 unless the fallback is for every targeted model that the delta is for."""
    missing = sorted(m for m in set(models) if m in package.models and m not in fallback.models)
    if missing:
        raise Conflict(f"field {FIELD!r}: package {fallback.upload_id!r} is for {', '.join(fallback.models)}, "
                       f"not for the targeted model(s) {', '.join(missing[:10])}", field=FIELD)


def job_fields(fallback: Package, block_size: int) -> dict[str, Any]:
    """The job's fallback fields (models.Job) for `fallback` sent in blocks of `block_size`."""
    size = fallback.size or 0
    return {"fallback_upload_id": fallback.upload_id, "fallback_size": size,
            "fallback_sha256": fallback.sha256 or "", "fallback_repository_key": fallback.repository_key or "",
            "fallback_block_count": wire.block_count(size, block_size)}


def off_base(device: Device, package: Package) -> bool:
    """True when `device` could take the delta's target version but is not on its base: registered, of
    one of its models, with no such app or one older than the target, and not the base version."""
    if not package.is_delta or device.state != "REGISTERED" or device.model not in package.models:
        return False
    installed = device.apps.get(package.app or "")
    if installed is None:
        return True
    if installed == package.base_version or package.version_label is None:
        return False
    return Version.parse(installed) < Version.parse(package.version_label)


def takes_fallback(job: Job, execution: Execution) -> bool:
    return execution.package_id is not None and execution.package_id == job.fallback_upload_id


def delivered(job: Job, execution: Execution) -> Job:
    """The job as `execution` receives it: the job itself, or for a fallback execution the job with the
    fallback's delivery fields (idempotent: a job already seen through the fallback stays as it is)."""
    if not takes_fallback(job, execution) or job.upload_id == job.fallback_upload_id:
        return job
    return replace(job, upload_id=job.fallback_upload_id or "", package_size=job.fallback_size,
                   package_sha256=job.fallback_sha256, repository_key=job.fallback_repository_key,
                   block_count=job.fallback_block_count)


def is_fallback_view(job: Job) -> bool:
    """True for a job seen through its fallback (`delivered`): unicast only, never the delta's group."""
    return job.fallback_upload_id is not None and job.upload_id == job.fallback_upload_id
