"""Staging queue consumer: S3 ObjectCreated notifications (in SQS bodies) -> scan of the object.

Two kinds of key: `uploads/<upload_id>` (an upload slot's presigned PUT: services/scan.scan_upload) and
`incoming/<anything>` (a pipeline's own `aws s3 cp`: services/incoming.scan_incoming, with the event's
eTag and userIdentity.principalId). A notification only says "this key was written": the scan looks at
the object as it is now (its ETag), so late, duplicated or out-of-order notifications are harmless, and
an object that replaced an already decided one is judged as a new upload (services/scan.py states the
rule).

A body that is not an S3 notification, the S3 test event, or a key outside both prefixes is logged and
dropped. With GuardDuty the bucket also notifies `s3:ObjectTagging:Put` under `uploads/`: GuardDuty
writing its verdict tag wakes the upload slot that waits for it (only `ObjectTagging:Put`, only slots).
When the malware engine has no verdict yet (GuardDuty has not tagged the object:
ScanPending), the message is reported in `batchItemFailures` (ReportBatchItemFailures): SQS delivers it
again after the queue's visibility timeout; on its SCAN_ATTEMPTS-th receive (the staging queue's
maxReceiveCount) the scan decides anyway and fails closed (REJECTED, `malware scan: no verdict ...`),
so an upload never waits in the dead-letter queue for a verdict. Infrastructure failures propagate, so
SQS retries the batch and, after 3 receives, moves the message to the dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from chalice import Blueprint

from .. import bootstrap
from ..domain.ports import ScanPending
from ..services.incoming import is_incoming_key, scan_incoming
from ..services.scan import scan_upload
from . import attach_app_middleware

bp = Blueprint(__name__)
log = logging.getLogger(__name__)
QUEUE = os.environ.get("OTA_STAGING_QUEUE", "ota-staging")
SCAN_ATTEMPTS = 3  # the staging queue's maxReceiveCount (infra/template.yaml, adapters/provision.py)


@dataclass(frozen=True)
class StagedKey:
    """One ObjectCreated record: the key written, and for `incoming/` keys what the event says of the PUT."""

    key: str
    etag: str | None = None
    principal: str | None = None

    @property
    def upload_id(self) -> str | None:
        prefix, _, upload_id = self.key.partition("/")
        if prefix == "uploads" and upload_id and "/" not in upload_id and len(upload_id) <= 64:
            return upload_id
        return None


def staged_keys(body: str) -> list[StagedKey]:
    """The staging keys named by one SQS body holding an S3 notification; [] for anything else."""
    try:
        notification = json.loads(body)
    except ValueError:
        log.warning("staging message is not JSON; dropped")
        return []
    if not isinstance(notification, dict) or not isinstance(notification.get("Records"), list):
        return []  # e.g. {"Event": "s3:TestEvent"}
    found = []
    for record in notification["Records"]:
        try:
            name = str(record["eventName"])
            if not name.startswith("ObjectCreated") and name != "ObjectTagging:Put":
                continue
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])
        except (KeyError, TypeError):
            log.warning("staging record without an object key; dropped")
            continue
        identity = record.get("userIdentity")
        principal = identity.get("principalId") if isinstance(identity, dict) else None
        etag = obj.get("eTag") if isinstance(obj, dict) else None
        staged = StagedKey(key, etag if isinstance(etag, str) else None,
                           principal if isinstance(principal, str) else None)
        if name == "ObjectTagging:Put":  # GuardDuty tagged an object: a slot waiting for it is decided now
            if staged.upload_id is not None:  # (an incoming/ object waits for its own ObjectCreated message,
                found.append(StagedKey(key))  # which names its uploader; the tagger is GuardDuty's role)
        elif staged.upload_id is not None or is_incoming_key(key):
            found.append(staged)
        else:
            log.warning("staging key outside uploads/ and incoming/ ignored", extra={"key": key[:200]})
    return found


def upload_ids(body: str) -> list[str]:
    """Upload ids named by one SQS body holding an S3 notification; [] for anything else."""
    return [s.upload_id for s in staged_keys(body) if s.upload_id is not None]


def _receive_count(fields: dict[str, Any]) -> int:
    attributes = fields.get("attributes")
    try:
        return int(attributes.get("ApproximateReceiveCount", "1")) if isinstance(attributes, dict) else 1
    except (TypeError, ValueError):
        return 1


@bp.on_sqs_message(queue=QUEUE, batch_size=5)
def on_staging_object(event: Any) -> dict[str, Any]:
    c = bootstrap.get()
    decided, waiting = [], []
    for record in event:
        fields = record.to_dict()
        last_attempt = _receive_count(fields) >= SCAN_ATTEMPTS
        try:
            for staged in staged_keys(record.body):
                if staged.upload_id is not None:
                    package = scan_upload(c.repository, c.storage, c.scanner, c.clock(), staged.upload_id,
                                          c.settings.max_package_bytes, last_attempt)
                else:
                    package = scan_incoming(c.repository, c.storage, c.scanner, c.clock(), staged.key,
                                            c.settings.max_package_bytes, staged.etag, staged.principal,
                                            last_attempt)
                if package is not None:  # a replaced object's decision is its own record (services/scan.py)
                    decided.append({"upload_id": package.upload_id, "state": package.state})
        except ScanPending as err:
            log.info("malware verdict pending; message retried later", extra={"reason": str(err)})
            waiting.append({"itemIdentifier": str(fields.get("messageId", ""))})
    return {"scanned": decided, "batchItemFailures": waiting}


attach_app_middleware()
