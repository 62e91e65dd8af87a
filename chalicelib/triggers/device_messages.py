"""Device-message queue consumer: IoT topic-rule output -> job service, with partial batch responses.

SQS body = {"topic": "ota/<epn>/<leaf>", "payload_b64": "<base64 raw MQTT payload>", "received_at": ms}
(rule SQL: SELECT encode(*, 'base64') AS payload_b64, topic() AS topic, timestamp() AS received_at
FROM 'ota/+/#'), or a paced execution's wake `{"wake": {"x", "epn", "at"}}` that the service sent itself
with a delay (services/pacing.py; the rule never writes that shape, so no device can send one).

What it does: parses each body with its size and nesting bounded before any JSON parsing; drops (logs,
counts in "malformed" and in the DeviceMessagesMalformed metric) a body that does not parse or names a
topic that is not a device->cloud topic; hands the rest to the job service as one batch (grouped per
execution there); answers with a partial batch response built by Powertools' BatchProcessor: only the
records whose execution group hit an infrastructure failure are listed in "batchItemFailures" (the
event source mapping has ReportBatchItemFailures, so SQS redelivers just those, then dead-letters
them). A malformed or hostile record is consumed, never retried, and never fails another record.
What it does not do: decide anything about executions (chalicelib.services.device_messages does).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from chalice import Blueprint

from otaformat import boundedjson
from otaformat.errors import FormatError
from otaformat.ids import check_epn
from otaformat.topics import parse_device_topic

from .. import bootstrap, observability
from ..services.device_messages import DeviceMessage, Outcome, handle_batch
from ..services.pacing import WAKE
from . import attach_app_middleware

bp = Blueprint(__name__)
log = logging.getLogger(__name__)
QUEUE = os.environ.get("OTA_DEVICE_QUEUE", "ota-device-messages")
MAX_PAYLOAD = 128 * 1024  # IoT Core's message size limit
MAX_BODY = 256 * 1024  # SQS's message size limit: the base64 payload plus the topic and timestamp
MAX_BODY_DEPTH = 2  # the body is one flat object


class InfrastructureFailure(Exception):
    """Raised for a record whose execution group could not be applied; BatchProcessor reports it."""


def parse_body(body: object, fallback_ms: float, message_id: str = "") -> DeviceMessage | None:
    """The device message an SQS body carries, or None (logged) if the body is malformed."""
    try:
        if not isinstance(body, str):
            raise TypeError("the body must be a string")
        data = boundedjson.loads(body, max_bytes=MAX_BODY, max_depth=MAX_BODY_DEPTH)
        if not isinstance(data, dict):
            raise TypeError("the body must be a JSON object")
        if WAKE in data:
            return _wake(data[WAKE], fallback_ms, message_id)
        topic, encoded = data["topic"], data["payload_b64"]
        received = data.get("received_at", fallback_ms)
        if not isinstance(topic, str) or not isinstance(encoded, str) or len(encoded) > MAX_PAYLOAD * 4 // 3 + 4:
            raise TypeError("topic and payload_b64 must be strings")
        if isinstance(received, bool) or not isinstance(received, int | float):
            raise TypeError("received_at must be a number")
        payload = base64.b64decode(encoded, validate=True)
    except (FormatError, ValueError, KeyError, TypeError, binascii.Error) as err:
        log.warning("device message body dropped", extra={"reason": str(err)[:200], "message_id": message_id})
        return None
    try:
        parsed = parse_device_topic(topic)
    except FormatError:
        parsed = None
    if parsed is None:
        log.warning("device message on an unknown topic dropped", extra={"topic": topic[:200]})
        return None
    epn, leaf = parsed
    return DeviceMessage(epn=epn, leaf=leaf, payload=payload, received_at=float(received) / 1000.0,
                         message_id=message_id)


def _wake(inner: object, now_ms: float, message_id: str) -> DeviceMessage:
    """A wake as a DeviceMessage of its execution's device (decoded by services/device_messages.decode)."""
    if not isinstance(inner, dict) or not isinstance(inner.get("epn"), str):
        raise TypeError("a wake names its device in 'epn'")
    check_epn(inner["epn"])
    payload = json.dumps({k: inner.get(k) for k in ("x", "at")}).encode()
    return DeviceMessage(epn=inner["epn"], leaf=WAKE, payload=payload, received_at=now_ms / 1000.0,
                         message_id=message_id)


def parse_records(records: list[Any], fallback_ms: float) -> tuple[list[DeviceMessage], int]:
    """The device messages of a batch's records, and how many records were malformed."""
    batch: list[DeviceMessage] = []
    for record in records:
        fields: Mapping[str, Any] = record if isinstance(record, Mapping) else {}
        message = parse_body(fields.get("body"), fallback_ms, str(fields.get("messageId", "")))
        if message is not None:
            batch.append(message)
    return batch, len(records) - len(batch)


def partial_response(records: list[Any], failures: Mapping[str, Exception]) -> dict[str, Any]:
    """{"batchItemFailures": [...]} naming exactly the records in `failures`, built by BatchProcessor."""
    def settle(record: SQSRecord) -> None:
        error = failures.get(record.message_id)
        if error is not None:
            raise InfrastructureFailure(f"{type(error).__name__}: {str(error)[:200]}") from error

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    with processor(records=records, handler=settle):
        processor.process()
    return dict(processor.response())


def count(outcome: Outcome, malformed_bodies: int) -> int:
    """Record the batch's malformed and failed counts as metrics; return the malformed total."""
    malformed = outcome.malformed + malformed_bodies
    if malformed:
        observability.count("DeviceMessagesMalformed", malformed)  # flushed by the app's SQS middleware
    if outcome.failures:
        observability.count("DeviceMessagesRedelivered", len(outcome.failures))
    return malformed


@bp.on_sqs_message(queue=QUEUE, batch_size=10)
def on_device_message(event: Any) -> dict[str, Any]:
    records = list(event.to_dict().get("Records") or [])
    c = bootstrap.get()
    batch, malformed_bodies = parse_records(records, c.clock() * 1000.0)
    outcome = handle_batch(c.repository, c.storage, c.publisher, batch, c.cache, c.pacing, c.clock, c.fanout)
    response = partial_response(records, outcome.failures) if records else {"batchItemFailures": []}
    return {**response, "applied": outcome.applied, "ignored": outcome.ignored,
            "malformed": count(outcome, malformed_bodies), "blocks_sent": outcome.blocks_sent}


attach_app_middleware()
