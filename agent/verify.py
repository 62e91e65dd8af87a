"""Deciding whether a downloaded package may be installed on this device. Pure: no I/O, clock passed in.

Order: job names this device (THREATS 10), the file matches the job's size and SHA-256 (3), signature by
a pinned key and every hash (1, 2, 8, 11, 14), the job's envelope is the package's (8), policy: expiry,
model, version floor, agent version (5, 6, 9), managed apps, then a delta is applied to the verified base
content and the result checked against the manifest (16). Outcomes are `Refusal`s carrying the device
state to report (REJECTED for a package the device must never take, FAILED for a transfer or local
problem that a retry might fix) and a reason.

`check_envelope` (+ `check_delta_base`) runs everything the job document's signed envelope allows as
soon as it arrives, before the first block is asked for or the first byte fetched: device, sizes,
signature by a pinned key, expiry, model, version floor, agent version, managed app, and for a delta the
base version and the base hash (the caller hashes its kept base: this module reads no files).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from otaformat.canonical import canonical_json
from otaformat.container import check_content, iter_files, split_container, verify_package
from otaformat.errors import FormatError
from otaformat.manifest import Manifest
from otaformat.messages import JobDocument
from otaformat.signing import check_policy, parse_envelope, verify_envelope


class Refusal(Exception):
    """The package or job is refused: `state` is "REJECTED" or "FAILED", `reason` a sentence."""

    def __init__(self, state: str, reason: str, code: str = "rejected") -> None:
        super().__init__(f"{state}: {reason}")
        self.state = state
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    content: bytes  # full target content (files concatenated in manifest order); bytes-like: verify_stream maps it

    def files(self) -> list[tuple[str, int, memoryview]]:
        return [(entry.path, entry.mode, data) for entry, data in iter_files(self.manifest, self.content)]


@dataclass(frozen=True)
class Policy:
    epn: str
    model: str
    agent_version: str
    trusted: Mapping[str, ec.EllipticCurvePublicKey]
    floors: Mapping[str, str]
    installed: Mapping[str, str]
    managed: tuple[str, ...] = ()


def check_job(job: JobDocument, policy: Policy, max_package_size: int) -> None:
    """Cheap checks on a job document before anything is downloaded."""
    if job.epn != policy.epn:
        raise Refusal("REJECTED", f"job document names device {job.epn}, this device is {policy.epn}", "wrong-device")
    if job.package_size > max_package_size:
        raise Refusal("REJECTED", f"package of {job.package_size} bytes exceeds this device's limit "
                      f"of {max_package_size}", "too-large")
    if job.package_size == 0 or job.block_count != -(-job.package_size // job.block_size):
        raise Refusal("REJECTED", f"block_count {job.block_count} does not match package_size "
                      f"{job.package_size} and block_size {job.block_size}", "malformed")
    if job.mode == "block" and job.window < 1:
        raise Refusal("REJECTED", "window must be at least 1 in block mode", "malformed")


def check_envelope(job: JobDocument, policy: Policy, *, now: datetime, max_package_size: int) -> Manifest:
    """Everything the job document tells, before downloading; returns the envelope's verified manifest."""
    check_job(job, policy, max_package_size)
    try:
        manifest = verify_envelope(job.envelope, policy.trusted).manifest
        check_policy(manifest, now=now, model=policy.model, version_floor=policy.floors.get(manifest.app),
                     agent_version=policy.agent_version)
    except FormatError as err:
        raise Refusal("REJECTED", f"{err.code}: {err.reason}", err.code) from err
    check_managed(manifest, policy)
    if manifest.delta is not None:
        installed = policy.installed.get(manifest.app)
        if installed != manifest.delta.base_version:
            raise Refusal("REJECTED", f"delta is for base {manifest.app} {manifest.delta.base_version}, "
                          f"installed is {installed or 'nothing'}", "wrong-base")
    return manifest


def check_delta_base(manifest: Manifest, base_sha256: str | None) -> None:
    """A delta's base hash against the SHA-256 of the content kept for the installed base version."""
    delta = manifest.delta
    if delta is None:
        return
    if base_sha256 is None:
        raise Refusal("FAILED", f"base content of {manifest.app} {delta.base_version} is not kept on this device",
                      "no-base")
    if base_sha256 != delta.base_sha256:
        raise Refusal("REJECTED", f"delta is for another build of {manifest.app} {delta.base_version} "
                      f"(base SHA-256 {delta.base_sha256[:16]}..., kept {base_sha256[:16]}...)", "wrong-base")


def check_managed(manifest: Manifest, policy: Policy) -> None:
    if policy.managed and manifest.app not in policy.managed and manifest.app not in policy.installed:
        raise Refusal("REJECTED", f"app {manifest.app} is not managed by this device", "unmanaged")


def verify_download(
    job: JobDocument,
    data: bytes,
    policy: Policy,
    *,
    now: datetime,
    base_content: Callable[[str, str], bytes | None],
) -> Verified:
    """Verify the spooled package file; return the content to install or raise Refusal."""
    check_job(job, policy, max(job.package_size, 1))
    if len(data) != job.package_size:
        raise Refusal("FAILED", f"package file is {len(data)} bytes, job declares {job.package_size}", "length")
    if hashlib.sha256(data).hexdigest() != job.package_sha256:
        raise Refusal("FAILED", "package SHA-256 does not match the job document (corrupted transfer)", "hash")
    hint = job.envelope.get("manifest") if isinstance(job.envelope.get("manifest"), dict) else {}
    app = hint.get("app") if isinstance(hint.get("app"), str) else ""
    base: bytes | None = None
    delta_hint = hint.get("delta")
    if isinstance(delta_hint, dict):
        installed = policy.installed.get(app)
        if installed != delta_hint.get("base_version"):
            raise Refusal("REJECTED", f"delta is for base {app} {delta_hint.get('base_version')}, "
                          f"installed is {installed or 'nothing'}", "wrong-base")
        base = base_content(app, installed) if installed else None
        if base is None:
            raise Refusal("FAILED", f"base content of {app} {installed} is not kept on this device", "no-base")
    manifest, content = judge_package(data, policy, now=now, version_floor=policy.floors.get(app), base=base)
    try:
        same = canonical_json(job.envelope) == canonical_json(parse_envelope(split_container(data).envelope))
    except FormatError:
        same = False
    if not same:
        raise Refusal("REJECTED", "the job document's envelope is not the package's signed envelope", "mismatch")
    check_managed(manifest, policy)
    return Verified(manifest, content)


def judge_package(data: bytes, policy: Policy, *, now: datetime, version_floor: str | None,
                  base: bytes | None) -> tuple[Manifest, bytes]:
    """The shared verdict (otaformat.verdict.judge) when present, else the same checks in the same order."""
    try:
        verdict_module = importlib.import_module("otaformat.verdict")
    except ImportError:
        verdict_module = None
    if verdict_module is not None:
        verdict = verdict_module.judge(data, policy.trusted, now=now, model=policy.model, version_floor=version_floor,
                                       agent_version=policy.agent_version, base_content=base)
        if not verdict.accepted or verdict.manifest is None or verdict.content is None:
            raise Refusal("REJECTED", f"{verdict.code}: {verdict.reason}", verdict.code or "rejected")
        manifest = verdict.manifest
        if manifest.is_delta and base is None:
            raise Refusal("FAILED", "delta package without base content on this device", "no-base")
        return manifest, verdict.content
    try:
        package = verify_package(data, policy.trusted)
        check_policy(package.manifest, now=now, model=policy.model, version_floor=version_floor,
                     agent_version=policy.agent_version)
    except FormatError as err:
        raise Refusal("REJECTED", f"{err.code}: {err.reason}", err.code) from err
    manifest = package.manifest
    if not manifest.is_delta:
        return manifest, package.content
    if base is None:
        raise Refusal("FAILED", "delta package without base content on this device", "no-base")
    try:
        delta = importlib.import_module("otaformat.delta")
        apply = delta.apply_verified_delta
    except (ImportError, AttributeError) as err:
        raise Refusal("FAILED", "delta not supported", "delta-unsupported") from err
    try:
        content = apply(manifest, base, package.content)
        check_content(manifest, content)
    except FormatError as err:
        raise Refusal("REJECTED", f"delta result: {err.code}: {err.reason}", err.code) from err
    return manifest, bytes(content)
