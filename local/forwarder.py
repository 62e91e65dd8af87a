"""What the IoT topic rule does: device messages from MQTT into the device-message SQS queue.

A paho client with the cloud's own certificate subscribes (QoS 1) to `ota/+/ack`, `ota/+/get`,
`ota/+/status` and `ota/+/cmd/result`; each message becomes one SQS message whose body is
`{"topic": ..., "payload_b64": base64(payload), "received_at": epoch ms}`, the shape the rule's SQL
produces on AWS. A sender thread drains what arrived and sends it with SendMessageBatch (up to 10
entries and 256 KiB per call), so a burst of acks costs few SQS calls. TCP_NODELAY is set on the
MQTT socket. Messages over the SQS size limit, or beyond MAX_WAITING not yet sent, are dropped and counted, as a
failing rule action would.
It does not decode or judge payloads.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

TOPIC_FILTERS = ("ota/+/ack", "ota/+/get", "ota/+/status", "ota/+/cmd/result")
SQS_MAX_BATCH = 10
SQS_MAX_BYTES = 256 * 1024
MAX_WAITING = 10000  # bounded memory: at most this many device messages wait for SQS
log = logging.getLogger("local.bridge")


@dataclass(frozen=True)
class MqttEndpoint:
    """Where the broker is and which certificate to connect with."""

    host: str
    port: int
    ca: str
    cert: str
    key: str


def rule_body(topic: str, payload: bytes, received_at_ms: int) -> str:
    return json.dumps({"topic": topic, "payload_b64": base64.b64encode(payload).decode("ascii"),
                       "received_at": received_at_ms}, separators=(",", ":"))


def batches(bodies: list[str]) -> list[list[str]]:
    """Split bodies into SendMessageBatch calls: at most 10 entries and 256 KiB each."""
    out: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body in bodies:
        n = len(body.encode())
        if current and (len(current) == SQS_MAX_BATCH or size + n > SQS_MAX_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(body)
        size += n
    if current:
        out.append(current)
    return out


def tls_client(endpoint: MqttEndpoint, client_id: str) -> mqtt.Client:
    """A paho client for the broker with mutual TLS; TCP_NODELAY is set once connected."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.tls_set(ca_certs=endpoint.ca, certfile=endpoint.cert, keyfile=endpoint.key,
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    return client


def set_nodelay(client: mqtt.Client) -> None:
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            log.warning("could not set TCP_NODELAY on the MQTT socket")


class BatchSender:
    """A thread that drains a bounded inbox into SendMessageBatch calls, retrying failed entries."""

    def __init__(self, sqs: Any, queue_url: str, *, retry_pause: float = 0.2) -> None:
        self._sqs, self.queue_url, self._pause = sqs, queue_url, retry_pause
        self._inbox: queue.Queue[str | None] = queue.Queue(maxsize=MAX_WAITING)
        self._thread = threading.Thread(target=self._loop, name="forwarder-send", daemon=True)
        self.forwarded = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, body: str) -> bool:
        """Queue one body; False (and counted as dropped) when MAX_WAITING bodies already wait."""
        try:
            self._inbox.put_nowait(body)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what waits, then stop."""
        self._inbox.put(None)  # blocks only while the sender drains a full inbox
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            bodies = [first]
            while len(bodies) < 100:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._send(bodies)
                    return
                bodies.append(more)
            self._send(bodies)

    def _send(self, bodies: list[str]) -> None:
        for chunk in batches(bodies):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
            for attempt in range(5):
                try:
                    reply = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                except Exception:
                    log.exception("SendMessageBatch failed (attempt %d)", attempt + 1)
                    time.sleep(self._pause * (attempt + 1))
                    continue
                failed = {f["Id"] for f in reply.get("Failed", [])}
                self.forwarded += len(entries) - len(failed)
                entries = [e for e in entries if e["Id"] in failed]
                if not entries:
                    break
            else:
                self.dropped += len(entries)
                log.error("dropped %d device message(s) after 5 failed sends", len(entries))


class Forwarder:
    """MQTT device topics -> device-message queue, until stopped."""

    def __init__(self, sqs: Any, queue_name: str, endpoint: MqttEndpoint, *, client_id: str = "ota-rule") -> None:
        self.sender = BatchSender(sqs, sqs.get_queue_url(QueueName=queue_name)["QueueUrl"])
        self._client = tls_client(endpoint, client_id)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._endpoint = endpoint
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self.too_big = 0

    @property
    def forwarded(self) -> int:
        return self.sender.forwarded

    @property
    def dropped(self) -> int:
        return self.sender.dropped + self.too_big

    def start(self, timeout: float = 30.0) -> None:
        """Connect, subscribe, start sending; returns once the subscription is acknowledged."""
        self.sender.start()
        self._client.connect(self._endpoint.host, self._endpoint.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError(f"no SUBACK from the broker at {self._endpoint.host}:{self._endpoint.port}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self.sender.close()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the rule connection: %s", reason)
            return
        set_nodelay(client)
        client.subscribe([(f, 1) for f in TOPIC_FILTERS])

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        body = rule_body(message.topic, message.payload, int(time.time() * 1000))
        if len(body.encode()) > SQS_MAX_BYTES:
            self.too_big += 1
            log.warning("dropped a %d-byte message on %s: over the SQS limit", len(message.payload), message.topic)
        elif not self.sender.put(body):  # SQS is not keeping up or is down: drop, as a failing rule would
            log.warning("dropped a message on %s: %d messages already wait for SQS", message.topic, MAX_WAITING)
