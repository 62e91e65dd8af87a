"""Staging queue consumer: S3 ObjectCreated notifications (in SQS bodies) -> scan of the upload.

A notification only says "uploads/<id> was written": the scan looks at the object as it is now
(its ETag), so late, duplicated or out-of-order notifications are harmless, and an object that
replaced an already decided one is judged as a new upload (services/scan.py states the rule).

A body that is not an S3 notification, the S3 test event, or a key outside `uploads/` is logged and
dropped. Infrastructure failures propagate, so SQS retries the batch and, after 3 receives, moves
the message to the dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any
from urllib.parse import unquote_plus

from chalice import Blueprint

from .. import bootstrap
from ..services.scan import scan_upload
from . import attach_app_middleware

bp = Blueprint(__name__)
log = logging.getLogger(__name__)
QUEUE = os.environ.get("OTA_STAGING_QUEUE", "ota-staging")


def upload_ids(body: str) -> list[str]:
    """Upload ids named by one SQS body holding an S3 notification; [] for anything else."""
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
            if not str(record["eventName"]).startswith("ObjectCreated"):
                continue
            key = unquote_plus(record["s3"]["object"]["key"])
        except (KeyError, TypeError):
            log.warning("staging record without an object key; dropped")
            continue
        prefix, _, upload_id = key.partition("/")
        if prefix == "uploads" and upload_id and "/" not in upload_id and len(upload_id) <= 64:
            found.append(upload_id)
    return found


@bp.on_sqs_message(queue=QUEUE, batch_size=5)
def on_staging_object(event: Any) -> dict[str, Any]:
    c = bootstrap.get()
    decided = []
    for record in event:
        for upload_id in upload_ids(record.body):
            package = scan_upload(c.repository, c.storage, c.scanner, c.clock(), upload_id,
                                  c.settings.max_package_bytes)
            if package is not None:  # a replaced object's decision is its own record (services/scan.py)
                decided.append({"upload_id": package.upload_id, "state": package.state})
    return {"scanned": decided}


attach_app_middleware()
