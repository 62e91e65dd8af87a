"""The real transport: paho-mqtt 2.x (CallbackAPIVersion.VERSION2), QoS 1, persistent session.

Client id = EPN ID, clean_session False (MQTT 3.1.1), TLS with client certificate when configured,
TCP_NODELAY on the socket (Nagle would cap a QoS 1 transfer at about 11 blocks/s), automatic
reconnect with exponential backoff (1..30 s). Subscribes to ota/{epn}/job|blk|cmd on every connect, and
to the group topics the engine follows (docs/protocol.md section 15); unsubscribes from the ones it left.
Inbound messages over their topic's size limit are dropped here, before decoding (THREATS 23).
When it cannot connect it says why (agent.connect_errors: refused, revoked or expired certificate,
broker certificate that does not verify, ...), once per distinct reason and again every 10 minutes.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from otaformat import topics

from .connect_errors import explain, explain_log
from .transport import Connected, Disconnected, Message, Sink, within_limit

log = logging.getLogger("ota-agent")
REPEAT_SECONDS = 600.0  # the same connection problem is logged again this often


class _Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt raised (paho drops the exception)."""

    last_error: BaseException | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as err:
            self.last_error = err
            raise


class MqttTransport:
    def __init__(self, epn: str, host: str, port: int, *, ca: str | None = None, cert: str | None = None,
                 key: str | None = None, keepalive: int = 30) -> None:
        self.epn = epn
        self.host, self.port, self.keepalive = host, port, keepalive
        self.sink: Sink | None = None
        self.prefix = f"{topics.PREFIX}/{epn}/"
        self._connected = False
        self._said: tuple[str, float] | None = None  # the last problem logged, and when
        self._alert: str | None = None  # a TLS alert the broker sent after the handshake
        self._groups: frozenset[str] = frozenset()  # group topics followed (subscribed on every connect)
        self._leave: frozenset[str] = frozenset()  # group topics to unsubscribe from on the next connect
        client = _Client(CallbackAPIVersion.VERSION2, client_id=epn, clean_session=False, protocol=mqtt.MQTTv311)
        if ca or cert:
            client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(64)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_log = self._on_log
        self.client = client

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self, sink: Sink) -> None:
        self.sink = sink
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, wait: float = 0.0) -> bool:
        info = self.client.publish(topic, payload, qos=1)
        if wait <= 0:
            return info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)
        try:
            info.wait_for_publish(timeout=wait)
        except (RuntimeError, ValueError) as err:
            log.info("publish to %s not confirmed: %s", topic, err)
            return False
        return info.is_published()

    # The sets are replaced, never mutated, so the network thread always reads a consistent one.
    def follow(self, topic: str) -> None:
        self._groups, self._leave = self._groups | {topic}, self._leave - {topic}
        if self._connected:
            self.client.subscribe(topic, 1)

    def unfollow(self, topic: str) -> None:
        self._groups = self._groups - {topic}
        if self._connected and self.client.unsubscribe(topic)[0] == mqtt.MQTT_ERR_SUCCESS:
            self._leave = self._leave - {topic}
        else:
            self._leave = self._leave | {topic}

    # -- paho callbacks (network thread) ------------------------------------------------------------

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        try:
            raw = sock if isinstance(sock, socket.socket) else getattr(sock, "_sock", sock)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError) as err:
            log.warning("could not set TCP_NODELAY: %s", err)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._problem(f"the broker refused the connection: {reason} (is this device's certificate registered "
                          "and its client id its EPN?)")
            return
        self._connected = True
        self._said, self._alert = None, None
        client.subscribe([(topics.topic(self.epn, leaf), 1) for leaf in topics.CLOUD_TO_DEVICE]
                         + [(group, 1) for group in sorted(self._groups)])
        leave, self._leave = self._leave - self._groups, frozenset()
        for group in sorted(leave):
            client.unsubscribe(group)
        log.info("connected to %s:%s", self.host, self.port)
        if self.sink:
            self.sink(Connected())

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        err = getattr(client, "last_error", None)
        why = explain(err, self.host, self.port) if err is not None else f"cannot reach {self.host}:{self.port}"
        self._problem(f"cannot reach the broker at {self.host}:{self.port}: {why}")

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._alert = explain_log(text) or self._alert

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was = self._connected
        self._connected = False
        why = f"{reason} ({self._alert})" if self._alert else str(reason)
        if self._alert or not was:
            self._problem(f"disconnected from {self.host}:{self.port}: {why}; retrying with backoff")
        if self.sink:
            self.sink(Disconnected(why))

    def _problem(self, text: str) -> None:
        """Log a connection problem at WARNING once, and again only after REPEAT_SECONDS (else at DEBUG)."""
        now = time.monotonic()
        if self._said is None or self._said[0] != text or now - self._said[1] >= REPEAT_SECONDS:
            log.warning("%s", text)
            self._said = (text, now)
        else:
            log.debug("%s", text)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.sink is not None and msg.topic in self._groups:
            if within_limit("group", msg.payload):
                self.sink(Message("group", bytes(msg.payload), msg.topic))
            return
        if not msg.topic.startswith(self.prefix) or self.sink is None:
            return
        leaf = msg.topic[len(self.prefix):]
        if leaf not in topics.CLOUD_TO_DEVICE or not within_limit(leaf, msg.payload):
            log.warning("dropping %d-byte message on %s (over the limit or unknown topic)", len(msg.payload), msg.topic)
            return
        self.sink(Message(leaf, bytes(msg.payload)))
