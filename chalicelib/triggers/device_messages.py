"""Device-message queue consumer: IoT topic-rule output -> job service.

SQS body = {"topic": "ota/<epn>/<leaf>", "payload_b64": "<base64 raw MQTT payload>", "received_at": ms}
(rule SQL: SELECT encode(*, 'base64') AS payload_b64, topic() AS topic, timestamp() AS received_at
FROM 'ota/+/#'). Bodies that do not parse, or name a topic that is not a device->cloud topic, are
logged and dropped; infrastructure failures propagate (SQS retries, then the dead-letter queue).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from typing import Any

from chalice import Blueprint

from otaformat.errors import FormatError
from otaformat.topics import parse_device_topic

from .. import bootstrap
from ..services.device_messages import DeviceMessage, handle_batch
from . import attach_app_middleware

bp = Blueprint(__name__)
log = logging.getLogger(__name__)
QUEUE = os.environ.get("OTA_DEVICE_QUEUE", "ota-device-messages")
MAX_PAYLOAD = 128 * 1024


def parse_body(body: str, fallback_ms: float) -> DeviceMessage | None:
    try:
        data = json.loads(body)
        topic, encoded = data["topic"], data["payload_b64"]
        received = data.get("received_at", fallback_ms)
        if not isinstance(topic, str) or not isinstance(encoded, str) or len(encoded) > MAX_PAYLOAD * 4 // 3 + 4:
            raise TypeError("topic and payload_b64 must be strings")
        if isinstance(received, bool) or not isinstance(received, int | float):
            raise TypeError("received_at must be a number")
        payload = base64.b64decode(encoded, validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        log.warning("device message body dropped", extra={"reason": str(err)[:200]})
        return None
    try:
        parsed = parse_device_topic(topic)
    except FormatError:
        parsed = None
    if parsed is None:
        log.warning("device message on an unknown topic dropped", extra={"topic": topic[:200]})
        return None
    epn, leaf = parsed
    return DeviceMessage(epn=epn, leaf=leaf, payload=payload, received_at=float(received) / 1000.0)


@bp.on_sqs_message(queue=QUEUE, batch_size=10)
def on_device_message(event: Any) -> dict[str, Any]:
    c = bootstrap.get()
    fallback = c.clock() * 1000.0
    batch = [m for m in (parse_body(record.body, fallback) for record in event) if m is not None]
    outcome = handle_batch(c.repository, c.storage, c.publisher, batch, c.cache)
    return {"applied": outcome.applied, "ignored": outcome.ignored, "malformed": outcome.malformed,
            "blocks_sent": outcome.blocks_sent}


attach_app_middleware()
