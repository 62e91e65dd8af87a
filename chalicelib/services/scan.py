"""The staging scan: size limits, otaformat's verdict (signature, hashes, archive safety, expiry) and a
pluggable malware-scan port; clean packages are published to an immutable repository key.

`judge_package` is the one place that decides on package bytes (otaformat.verdict.judge's checks,
streamed by otaformat.streaming.judge_buffer). Rejected uploads stay in staging (quarantine) with every
reason recorded. Does not: delete anything.

Memory (issue 12): the scan never holds the package in its heap. Storage.read_staging spools the
staging object to an unlinked temporary file (Lambda: /tmp, TMPDIR elsewhere) and hands back a
read-only mmap of it; the judgement reads that buffer in 1 MiB slices, a compressed payload is
decompressed into a second unlinked temporary file for the malware scan, and `publish` uploads from
the same mapping. The mapped pages are page cache (the kernel drops them under pressure), so the
function's heap stays at a few MiB whatever the package; its ephemeral storage must hold the package
plus its decompressed content (2 x OTA_MAX_PACKAGE_BYTES; Lambda allows up to 10,240 MB).

What is judged is what is published. The staging object stays writable through its presigned PUT
URL after the scan has read it, so the scan never copies staging to the repository (a copy takes
whatever staging holds at that moment). It reads the bytes and their ETag in one GET, judges those
bytes, and writes those same bytes to the repository key (Storage.publish: S3 checks them against the
recorded SHA-256, `ChecksumSHA256`; the key is written once, `IfNoneMatch`). We chose this over
`CopySourceIfMatch` on the ETag: it leaves no window at all, does not lean on the ETag (an MD5 for
single-part uploads) for integrity, and moto honours it, so the defence is tested.

One decision per staged object version, and a decision never changes:
- a PENDING slot is decided on the object read, and remembers its ETag (`staging_etag`);
- a notification for a decided slot whose staging object still has that ETag changes nothing
  (scanning twice is a no-op);
- an object that replaced a decided one (another ETag) is judged from scratch as a new upload, under
  its own record `<upload_id>.<16 hex of SHA-256(ETag)>` with `replaces` = the slot (same declared
  size), REJECTED or AVAILABLE on its own merits. The slot's record, its repository object and every
  job that references it stay exactly as they were: nothing REJECTED later turns AVAILABLE under the
  same id, and nothing AVAILABLE is ever re-pointed. The id is derived from the ETag so redelivered
  notifications find the same record; a replacement record is created already decided.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from otaformat import messages
from otaformat.container import HEADER, envelope_length
from otaformat.manifest import Manifest
from otaformat.signing import parse_envelope
from otaformat.streaming import judge_buffer

from ..domain.errors import ConcurrentUpdate, Conflict
from ..domain.models import Package, bumped
from ..domain.ports import MalwareScanner, Repository, ScanPending, StagedObject, Storage
from .keys import trusted_keys

log = logging.getLogger(__name__)
# the envelope travels inside the job document (one MQTT message, otaformat.messages.MAX_JOB_DOCUMENT)
MAX_ENVELOPE_IN_JOB = messages.MAX_JOB_DOCUMENT - 4096
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class BuiltinScanner:
    """The local default malware-scan step (OTA_MALWARE_ENGINE=builtin). It is NOT an antivirus engine:
    it only rejects the EICAR test signature in the package bytes or in the unpacked content, and says
    so in every package view (`scanner`). On AWS choose a real engine: OTA_MALWARE_ENGINE=guardduty
    (chalicelib/adapters/malware.py)."""

    name = "builtin-eicar (local default, not a malware engine: EICAR test signature only)"

    def scan(self, data: bytes, manifest: Any, content: bytes | None = None, obj: Any = None) -> list[str]:
        for where, blob in (("package", data), ("content", content or b"")):
            if _contains(blob, EICAR):
                return [f"malware scan: EICAR test signature found in the {where}"]
        return []


def _contains(blob: Any, needle: bytes, chunk: int = 1 << 20) -> bool:
    """Whether any buffer (bytes, memoryview, mmap) holds `needle`, copying at most one chunk at a time."""
    view = memoryview(blob).cast("B")
    step = max(chunk, len(needle))
    return any(bytes(view[offset : offset + step + len(needle) - 1]).find(needle) >= 0
               for offset in range(0, max(len(view), 1), step))


@dataclass(frozen=True)
class Judgement:
    reasons: tuple[str, ...]
    manifest: Manifest | None
    envelope: dict[str, Any] | None
    key_id: str | None
    content: bytes | None


def judge_package(data: bytes, trusted: Mapping[str, ec.EllipticCurvePublicKey], now: float) -> Judgement:
    """Verdict on package bytes (the one-line switch point for the package checks): otaformat.verdict's
    checks, in its order and with its codes, streamed over `data` without copying it
    (otaformat.streaming.judge_buffer; `data` may be a read-only mmap of the spooled staging object).
    A compressed payload is decompressed into an unlinked temporary file for the malware scan."""
    result = judge_buffer(data, trusted, now=dt.datetime.fromtimestamp(now, dt.UTC), model=None,
                          content_file=tempfile.TemporaryFile)
    if not result.accepted:
        return Judgement((f"{result.code}: {result.reason}",), result.manifest, None, None, None)
    raw_envelope = bytes(memoryview(data)[HEADER.size : HEADER.size + envelope_length(bytes(data[: HEADER.size]))])
    if len(raw_envelope) > MAX_ENVELOPE_IN_JOB:
        reason = (f"size: signed manifest is {len(raw_envelope)} bytes; a job document carries at most "
                  f"{MAX_ENVELOPE_IN_JOB} (split the package)")
        return Judgement((reason,), result.manifest, None, None, None)
    return Judgement((), result.manifest, parse_envelope(raw_envelope), result.key_id, result.content)


def repository_key(manifest: Manifest, sha256: str) -> str:
    return f"packages/{manifest.app}/{manifest.version}/{sha256}.otapkg"


def replacement_id(upload_id: str, etag: str) -> str:
    """The record id of the object with `etag` that replaced the decided object of slot `upload_id`."""
    return f"{upload_id}.{hashlib.sha256(etag.encode()).hexdigest()[:16]}"


ATTEMPTS = 3


def scan_upload(
    repo: Repository, storage: Storage, scanner: MalwareScanner, now: float, upload_id: str, max_bytes: int,
    last_attempt: bool = True,
) -> Package | None:
    """Decide what the staging object of one upload slot holds now. Returns the record holding that
    decision (the slot's, or a replacement's), or None when no upload slot has this id. Raises
    ScanPending (nothing decided) while the malware engine has no verdict, unless `last_attempt`:
    then the upload is REJECTED for it (fail closed)."""
    for _ in range(ATTEMPTS - 1):
        try:
            return _scan_once(repo, storage, scanner, now, upload_id, max_bytes, last_attempt)
        except ConcurrentUpdate:
            continue  # another scan decided the slot meanwhile: look again (its object may differ from ours)
    try:
        return _scan_once(repo, storage, scanner, now, upload_id, max_bytes, last_attempt)
    except ConcurrentUpdate:
        return repo.get_package(upload_id)


def _scan_once(
    repo: Repository, storage: Storage, scanner: MalwareScanner, now: float, upload_id: str, max_bytes: int,
    last_attempt: bool,
) -> Package | None:
    slot = repo.get_package(upload_id)
    if slot is None:
        log.warning("staging object without an upload slot ignored", extra={"upload_id": upload_id})
        return None
    if slot.replaces is not None:
        return slot  # a replacement's record: created decided; its staging object is the slot's
    limit = min(slot.declared_size, max_bytes)
    if slot.state == "PENDING":
        staged = storage.read_staging(upload_id, limit)
        if staged is None:
            return slot  # notification before the object is visible: stays PENDING, the retry decides
        decided = bumped(slot, **decide(repo, storage, scanner, now, staged, limit, slot.declared_sha256,
                                        last_attempt))
        repo.save_package(decided)
        log.info("package scanned", extra={"upload_id": upload_id, "state": decided.state,
                                           "reasons": list(decided.reasons)})
        return decided
    if slot.staging_etag is not None and storage.staging_etag(upload_id) in (None, slot.staging_etag):
        return slot  # the judged object (or none): scanning twice changes nothing
    staged = storage.read_staging(upload_id, limit)
    if staged is None or _is_judged_object(slot, staged):
        return slot
    record_id = replacement_id(upload_id, staged.etag)
    existing = repo.get_package(record_id)
    if existing is not None:
        return existing
    fresh = Package(upload_id=record_id, state="PENDING", declared_size=slot.declared_size, created_at=now,
                    replaces=upload_id, declared_sha256=slot.declared_sha256)
    decided = replace(fresh, **decide(repo, storage, scanner, now, staged, limit, slot.declared_sha256,
                                      last_attempt))
    try:
        repo.create_package(decided)
    except Conflict:
        return repo.get_package(record_id) or decided
    log.warning("staging object replaced after its decision; judged as a new upload",
                extra={"upload_id": record_id, "replaces": upload_id, "state": decided.state,
                       "reasons": list(decided.reasons)})
    return decided


def _is_judged_object(slot: Package, staged: StagedObject) -> bool:
    if slot.staging_etag is not None:
        return staged.etag == slot.staging_etag
    # decided before ETags were recorded: the same bytes (or the same oversized object) is the same upload
    if staged.data is None:
        return slot.sha256 is None and staged.size == slot.size
    return hashlib.sha256(staged.data).hexdigest() == slot.sha256


def decide(
    repo: Repository, storage: Storage, scanner: MalwareScanner, now: float, staged: StagedObject, limit: int,
    declared_sha256: str | None = None, last_attempt: bool = True,
) -> dict[str, Any]:
    """The decision on one staged object version as record fields; a clean package's bytes (exactly
    the judged ones) are published before the decision is returned, so AVAILABLE never names a key
    that does not hold them. ScanPending from the malware engine propagates (nothing decided) unless
    `last_attempt`, where it becomes a rejection reason."""
    reasons: list[str] = []
    judgement = Judgement((), None, None, None, None)
    sha256 = None
    data = staged.data
    if data is None or staged.size > limit:
        reasons.append(f"size: upload is {staged.size} bytes, more than the {limit} bytes allowed for this slot")
    else:
        sha256 = hashlib.sha256(data).hexdigest()
        if declared_sha256 is not None and sha256 != declared_sha256:
            reasons.append(f"sha256: the upload's SHA-256 is {sha256}; the slot was opened for {declared_sha256}")
        judgement = judge_package(data, trusted_keys(repo), now)
        reasons.extend(judgement.reasons)
        if not reasons:
            try:
                reasons.extend(scanner.scan(data, judgement.manifest, judgement.content, staged))
            except ScanPending as err:
                if not last_attempt:
                    raise
                reasons.append(f"malware scan: no verdict after the last attempt ({err})")
            except Exception as err:  # a broken scanner must fail closed, never promote
                reasons.append(f"malware scan failed: {type(err).__name__}")
    manifest = judgement.manifest
    changes: dict[str, Any] = {"size": staged.size, "sha256": sha256, "scanner": scanner.name, "scanned_at": now,
                               "reasons": tuple(reasons), "staging_etag": staged.etag}
    if manifest is not None:
        changes.update(package_id=manifest.package_id, app=manifest.app, version_label=manifest.version,
                       kind=manifest.kind, models=tuple(manifest.models), is_delta=manifest.is_delta,
                       base_version=manifest.delta.base_version if manifest.delta else None,
                       expires=manifest.expires)
    if reasons or manifest is None or sha256 is None or data is None:
        return {"state": "REJECTED", **changes}
    key = repository_key(manifest, sha256)
    storage.publish(key, data, sha256)
    return {"state": "AVAILABLE", "repository_key": key, "key_id": judgement.key_id,
            "envelope": judgement.envelope, **changes}
