"""Fan-out queue consumer: one job fan-out work item per SQS body -> services/fanout.handle.

Bodies are `{"job_id", "chunk"}` or `{"job_id", "model", "cursor"}` (services/fanout.py). A body that is
not a JSON object is logged and consumed; an infrastructure failure fails only its own record (partial
batch response, the event source mapping has ReportBatchItemFailures): SQS redelivers it, then moves it
to the dead-letter queue after 3 receives. Redelivery is harmless (executions are created once).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Blueprint

from .. import bootstrap
from ..services import fanout
from . import attach_app_middleware

bp = Blueprint(__name__)
log = logging.getLogger(__name__)
QUEUE = os.environ.get("OTA_FANOUT_QUEUE", "ota-fanout")
MAX_BODY = 4096


def work_item(body: str) -> dict[str, Any] | None:
    try:
        item = json.loads(body) if len(body) <= MAX_BODY else None
    except ValueError:
        item = None
    if not isinstance(item, dict):
        log.warning("fan-out message dropped: not a JSON object of at most %d bytes", MAX_BODY)
        return None
    return item


def process(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Handle a batch; {"batchItemFailures": [...]} names the records to redeliver."""
    c = bootstrap.get()
    queue = c.fanout

    def one(record: SQSRecord) -> None:
        item = work_item(record.body)
        if item is not None and queue is not None:
            fanout.handle(c.repository, c.storage, c.publisher, queue, c.clock(), item)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    with processor(records=records, handler=one):
        processor.process()
    return dict(processor.response())


@bp.on_sqs_message(queue=QUEUE, batch_size=5)
def on_fanout(event: Any) -> dict[str, Any]:
    return process(list(event.to_dict().get("Records") or []))


attach_app_middleware()
