"""Uploads made straight into the staging bucket: `aws s3 cp app.otapkg s3://<staging>/incoming/...` by a
release pipeline with IAM access, without an upload slot. Such an object is judged exactly like a slot's
(services/scan.decide: size limit, otaformat's verdict, the malware engine; the judged bytes are the
published ones) and becomes a package record of its own, with `source` "s3", `uploaded_by` (the S3
event's principal) and `staging_key`.

Which record, so that the same bytes uploaded twice are one package and a redelivered notification
changes nothing:
- an AVAILABLE package already holding these bytes (same SHA-256 and size, uploaded through the API or
  S3) is the answer: nothing new is recorded (as POST /packages with `sha256` answers);
- otherwise the record is `s3-<40 hex of the SHA-256>`, created conditionally, so two notifications or
  two keys holding the same bytes, racing, make one record;
- if that record is REJECTED and this is another object version (another key, ETag or Last-Modified:
  a new `aws s3 cp`, e.g. after the missing publisher key was registered), the version is judged again
  as `s3-<40 hex>.<16 hex of the version>`; a REJECTED decision never turns AVAILABLE under its id;
- an object larger than OTA_MAX_PACKAGE_BYTES is REJECTED as `s3-<16 hex of the version>`, never read
  past the limit.

The scan reads the object as it is now; a notification whose eTag is not the object's current one is
stale (the key was written again since) and is skipped: the newer PUT's own notification decides, with
its own principal. A replaced `incoming/` object is thus a new upload. The object stays in staging
after its decision (the lifecycle rule expires `incoming/` after 90 days, as REJECTED records expire):
quarantine for a REJECTED one, harmless for the rest (the repository holds the published bytes).
Does not: delete or copy staging objects, or open upload slots.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace

from ..domain.errors import Conflict
from ..domain.models import Package
from ..domain.ports import MalwareScanner, Repository, StagedObject, Storage
from .scan import decide

log = logging.getLogger(__name__)
PREFIX = "incoming/"
MAX_KEY = 1024  # S3's own limit on key length
MAX_PRINCIPAL = 256


def is_incoming_key(key: str) -> bool:
    """An object a pipeline uploaded under `incoming/` (folder markers `.../` are not uploads)."""
    return key.startswith(PREFIX) and len(key) > len(PREFIX) and not key.endswith("/") and len(key) <= MAX_KEY


def object_version(staged: StagedObject) -> str:
    """16 hex naming one object version: its key, ETag and Last-Modified (redeliveries agree on it)."""
    text = f"{staged.key}\n{staged.etag.strip(chr(34))}\n{staged.modified}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def bytes_id(sha256: str) -> str:
    return f"s3-{sha256[:40]}"


def scan_incoming(
    repo: Repository, storage: Storage, scanner: MalwareScanner, now: float, key: str, max_bytes: int,
    notified_etag: str | None = None, principal: str | None = None, last_attempt: bool = True,
) -> Package | None:
    """Decide the object at `key` (under incoming/) as it is now. Returns the package holding those
    bytes (new or existing), or None when the object is gone or the notification is stale. Raises
    ScanPending (nothing recorded) while the malware engine has no verdict, unless `last_attempt`."""
    if not is_incoming_key(key):
        return None
    staged = storage.read_incoming(key, max_bytes)
    if staged is None:
        return None
    if notified_etag and notified_etag.strip('"') != staged.etag.strip('"'):
        log.info("stale incoming notification skipped: the key holds a newer object", extra={"key": key})
        return None
    version = object_version(staged)
    uploader = principal[:MAX_PRINCIPAL] if principal else None
    if staged.data is None or staged.size > max_bytes:
        return _record(repo, storage, scanner, now, f"s3-{version}", staged, version, max_bytes, uploader,
                       last_attempt)
    sha256 = hashlib.sha256(staged.data).hexdigest()
    same = [p for p in repo.list_packages() if p.state == "AVAILABLE" and p.sha256 == sha256 and p.size == staged.size]
    if same:
        existing = min(same, key=lambda p: (p.created_at, p.upload_id))
        log.info("incoming object holds an AVAILABLE package's bytes; nothing new",
                 extra={"key": key, "upload_id": existing.upload_id})
        return existing
    record_id = bytes_id(sha256)
    first = repo.get_package(record_id)
    if first is not None:
        if first.sha256 == sha256 and (first.state != "REJECTED" or first.staging_version == version):
            return first
        record_id = f"{record_id}.{version}"  # rejected bytes uploaded again: judged again, as their own record
    return _record(repo, storage, scanner, now, record_id, staged, version, max_bytes, uploader, last_attempt)


def _record(
    repo: Repository, storage: Storage, scanner: MalwareScanner, now: float, record_id: str,
    staged: StagedObject, version: str, max_bytes: int, uploader: str | None, last_attempt: bool,
) -> Package:
    existing = repo.get_package(record_id)
    if existing is not None:
        return existing
    fresh = Package(upload_id=record_id, state="PENDING", declared_size=staged.size, created_at=now, source="s3",
                    uploaded_by=uploader, staging_key=staged.key, staging_version=version)
    decided = replace(fresh, **decide(repo, storage, scanner, now, staged, max_bytes, last_attempt=last_attempt))
    try:
        repo.create_package(decided)
    except Conflict:
        return repo.get_package(record_id) or decided
    log.info("incoming object scanned", extra={"upload_id": record_id, "key": staged.key, "state": decided.state,
                                               "uploaded_by": uploader, "reasons": list(decided.reasons)})
    return decided
