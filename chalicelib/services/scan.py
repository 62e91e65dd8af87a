"""The staging scan: size limits, otaformat's verdict (signature, hashes, archive safety, expiry) and a
pluggable malware-scan port; clean packages are promoted to an immutable repository key.

`judge_package` is the one place that decides on package bytes (otaformat.verdict.judge). Scanning
twice changes nothing: only a PENDING package is ever decided. Rejected uploads stay in staging
(quarantine) with every reason recorded. Does not: delete anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from otaformat import messages, verdict
from otaformat.container import split_container
from otaformat.manifest import Manifest
from otaformat.signing import parse_envelope

from ..domain.errors import ConcurrentUpdate
from ..domain.models import Package, bumped
from ..domain.ports import MalwareScanner, Repository, Storage
from .keys import trusted_keys

log = logging.getLogger(__name__)
# the envelope travels inside the job document (one MQTT message, otaformat.messages.MAX_JOB_DOCUMENT)
MAX_ENVELOPE_IN_JOB = messages.MAX_JOB_DOCUMENT - 4096
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class BuiltinScanner:
    """Default malware-scan step. It is NOT an antivirus engine: it only rejects the EICAR test
    signature in the package bytes or in the unpacked content. Plug a real engine in behind the
    MalwareScanner port for production."""

    name = "builtin (EICAR test signature only; no antivirus engine)"

    def scan(self, data: bytes, manifest: Any, content: bytes | None = None) -> list[str]:
        for where, blob in (("package", data), ("content", content or b"")):
            if EICAR in blob:
                return [f"malware scan: EICAR test signature found in the {where}"]
        return []


@dataclass(frozen=True)
class Judgement:
    reasons: tuple[str, ...]
    manifest: Manifest | None
    envelope: dict[str, Any] | None
    key_id: str | None
    content: bytes | None


def judge_package(data: bytes, trusted: Mapping[str, ec.EllipticCurvePublicKey], now: float) -> Judgement:
    """Verdict on package bytes (the one-line switch point for the package checks)."""
    result = verdict.judge(data, trusted, now=dt.datetime.fromtimestamp(now, dt.UTC), model=None)
    if not result.accepted:
        return Judgement((f"{result.code}: {result.reason}",), result.manifest, None, None, None)
    raw_envelope = split_container(data).envelope
    if len(raw_envelope) > MAX_ENVELOPE_IN_JOB:
        reason = (f"size: signed manifest is {len(raw_envelope)} bytes; a job document carries at most "
                  f"{MAX_ENVELOPE_IN_JOB} (split the package)")
        return Judgement((reason,), result.manifest, None, None, None)
    return Judgement((), result.manifest, parse_envelope(raw_envelope), result.key_id, result.content)


def repository_key(manifest: Manifest, sha256: str) -> str:
    return f"packages/{manifest.app}/{manifest.version}/{sha256}.otapkg"


def scan_upload(
    repo: Repository, storage: Storage, scanner: MalwareScanner, now: float, upload_id: str, max_bytes: int
) -> Package | None:
    """Decide one staged upload. Returns the package, or None when no upload slot has this id."""
    package = repo.get_package(upload_id)
    if package is None:
        log.warning("staging object without an upload slot ignored", extra={"upload_id": upload_id})
        return None
    if package.state != "PENDING":
        return package
    size = storage.staging_size(upload_id)
    reasons: list[str] = []
    judgement = Judgement((), None, None, None, None)
    sha256 = None
    if size is None:
        return package  # notification before the object is visible: stays PENDING, the retry decides
    limit = min(package.declared_size, max_bytes)
    if size > limit:
        reasons.append(f"size: upload is {size} bytes, more than the {limit} bytes allowed for this slot")
    else:
        data = storage.read_staging(upload_id)
        sha256 = hashlib.sha256(data).hexdigest()
        judgement = judge_package(data, trusted_keys(repo), now)
        reasons.extend(judgement.reasons)
        if not reasons:
            try:
                reasons.extend(_malware(scanner, data, judgement))
            except Exception as err:  # a broken scanner must fail closed, never promote
                reasons.append(f"malware scan failed: {type(err).__name__}")
    manifest = judgement.manifest
    changes: dict[str, Any] = {"size": size, "sha256": sha256, "scanner": scanner.name, "scanned_at": now,
                               "reasons": tuple(reasons)}
    if manifest is not None:
        changes.update(package_id=manifest.package_id, app=manifest.app, version_label=manifest.version,
                       kind=manifest.kind, models=tuple(manifest.models), is_delta=manifest.is_delta,
                       base_version=manifest.delta.base_version if manifest.delta else None,
                       expires=manifest.expires)
    if reasons or manifest is None or sha256 is None:
        decided = bumped(package, state="REJECTED", **changes)
    else:
        key = repository_key(manifest, sha256)
        storage.promote(upload_id, key)
        decided = bumped(package, state="AVAILABLE", repository_key=key, key_id=judgement.key_id,
                         envelope=judgement.envelope, **changes)
    try:
        repo.save_package(decided)
    except ConcurrentUpdate:
        return repo.get_package(upload_id)
    log.info("package scanned", extra={"upload_id": upload_id, "state": decided.state, "reasons": list(reasons)})
    return decided


def _malware(scanner: MalwareScanner, data: bytes, judgement: Judgement) -> list[str]:
    return list(scanner.scan(data, judgement.manifest, judgement.content))
