"""Publisher adapters: AWS IoT data plane (boto3 iot-data) or a plain MQTT broker (paho-mqtt over mTLS).

Both publish at QoS 1. The MQTT client connects lazily, once per container, with TCP_NODELAY set on
its socket (Nagle would cap block throughput), and waits for each PUBACK in batches so a window of
blocks goes out back to back. Does not: choose topics or encode payloads.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import uuid
from typing import Any

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The broker did not accept a message."""


class IotDataPublisher:
    def __init__(self, client: Any) -> None:
        self._client = client

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic=topic, qos=1, payload=payload)

    def flush(self) -> None:
        """iot-data publishes are synchronous."""


class MqttPublisher:
    """paho-mqtt 2.x client, TLS with a client certificate, connected on first use."""

    def __init__(self, host: str, port: int, cert: str, key: str, ca: str, *, timeout: float = 30.0,
                 max_inflight: int = 100) -> None:
        self._host, self._port = host, port
        self._cert, self._key, self._ca = cert, key, ca
        self._timeout = timeout
        self._max_inflight = max_inflight
        self._client: Any = None
        self._lock = threading.Lock()
        self._pending: list[Any] = []

    def _connect(self) -> Any:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ota-cloud-{uuid.uuid4().hex[:12]}",
                             protocol=mqtt.MQTTv311)
        client.tls_set(ca_certs=self._ca, certfile=self._cert, keyfile=self._key, cert_reqs=ssl.CERT_REQUIRED,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.max_inflight_messages_set(self._max_inflight)
        client.max_queued_messages_set(0)
        connected = threading.Event()

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if not reason.is_failure:
                connected.set()

        def on_socket_open(_c: Any, _u: Any, sock: Any) -> None:
            raw = getattr(sock, "socket", sock)
            try:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):  # pragma: no cover - platform specific
                log.warning("could not set TCP_NODELAY on the MQTT socket")

        client.on_connect = on_connect
        client.on_socket_open = on_socket_open
        client.connect(self._host, self._port, keepalive=60)
        client.loop_start()
        if not connected.wait(self._timeout):
            client.loop_stop()
            raise PublishError(f"MQTT broker {self._host}:{self._port} did not accept the connection")
        return client

    def publish(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if self._client is None or not self._client.is_connected():
                if self._client is not None:
                    self._client.loop_stop()
                self._client = self._connect()
            info = self._client.publish(topic, payload, qos=1)
            self._pending.append(info)
            if len(self._pending) >= self._max_inflight // 2:
                self._drain()

    def flush(self) -> None:
        with self._lock:
            self._drain()

    def _drain(self) -> None:
        pending, self._pending = self._pending, []
        for info in pending:
            info.wait_for_publish(self._timeout)
            if not info.is_published():
                raise PublishError(f"broker did not acknowledge message {info.mid}")
