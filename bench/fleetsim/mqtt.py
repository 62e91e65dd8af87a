"""A minimal MQTT 3.1.1 client on asyncio streams: what one simulated device needs, at a few KB per session.

paho runs a thread (or a socket loop and buffers) per client, far too much for 10,000 devices in two
processes. This client speaks exactly the subset the device protocol uses (docs/protocol.md section 1):
CONNECT (client id = EPN, persistent session, keepalive), SUBSCRIBE at QoS 1, PUBLISH at QoS 1 both ways
(PUBACK sent for every QoS 1 message received, our own PUBACKs counted), PINGREQ. TLS with a client
certificate and TCP_NODELAY come from the caller's SSLContext and the socket option set here. It does
not retransmit on reconnect and does not reconnect (a simulated session that loses its connection ends
and is reported): the benchmark measures the cloud, not reconnect storms. No QoS 2, no will, no auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Callable

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 1, 2, 3, 4, 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
OnMessage = Callable[[str, bytes], None]


class MqttError(RuntimeError):
    """The broker refused us, or answered something this client does not understand."""


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _remaining_length(len(body)) + body


def connect_packet(client_id: str, keepalive: int, clean: bool) -> bytes:
    flags = 0x02 if clean else 0x00
    return packet(CONNECT, 0, _string("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive) + _string(client_id))


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    return packet(PUBLISH, 0x02, _string(topic) + struct.pack(">H", packet_id) + payload)


def parse_publish(flags: int, body: bytes) -> tuple[str, int | None, bytes]:
    """(topic, packet id or None for QoS 0, payload) of a PUBLISH body."""
    (length,) = struct.unpack_from(">H", body)
    topic = body[2:2 + length].decode()
    at = 2 + length
    packet_id = None
    if flags & 0x06:
        (packet_id,) = struct.unpack_from(">H", body, at)
        at += 2
    return topic, packet_id, body[at:]


class Session:
    """One MQTT connection. `on_message(topic, payload)` runs in the event loop for every PUBLISH received."""

    def __init__(self, client_id: str, on_message: OnMessage, keepalive: int = 60) -> None:
        self.client_id, self.on_message, self.keepalive = client_id, on_message, keepalive
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._next_id = 0
        self._subacks: dict[int, asyncio.Future[bytes]] = {}
        self.published = 0  # QoS 1 PUBLISH packets we sent
        self.acked = 0  # PUBACKs the broker sent us for them
        self.received = 0
        self.closed: asyncio.Future[str] | None = None

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    async def connect(self, host: str, port: int, context: ssl.SSLContext, *, clean: bool = False,
                      timeout: float = 60.0) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host, limit=256 * 1024), timeout)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader, self._writer = reader, writer
        writer.write(connect_packet(self.client_id, self.keepalive, clean))
        kind, _flags, body = await asyncio.wait_for(self._read_packet(), timeout)
        if kind != CONNACK or len(body) != 2 or body[1] != 0:
            writer.close()
            raise MqttError(f"{self.client_id}: CONNACK refused ({kind}, {body.hex()})")
        self.closed = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._read_loop())
        asyncio.get_running_loop().create_task(self._ping_loop())

    def subscribe_now(self, topics: list[str]) -> asyncio.Future[bytes]:
        """Write a SUBSCRIBE (QoS 1) at once, before anything published after this call; the SUBACK's
        return codes arrive in the future."""
        packet_id = self._packet_id()
        body = struct.pack(">H", packet_id) + b"".join(_string(t) + b"\x01" for t in topics)
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._subacks[packet_id] = waiter
        self._send(packet(SUBSCRIBE, 0x02, body))
        return waiter

    def unsubscribe_now(self, topics: list[str]) -> None:
        body = struct.pack(">H", self._packet_id()) + b"".join(_string(t) for t in topics)
        self._send(packet(UNSUBSCRIBE, 0x02, body))

    async def subscribe(self, topics: list[str], timeout: float = 60.0) -> None:
        """SUBSCRIBE at QoS 1 and wait for the SUBACK; a refused filter (0x80) raises."""
        codes = await asyncio.wait_for(self.subscribe_now(topics), timeout)
        if any(c & 0x80 for c in codes):
            raise MqttError(f"{self.client_id}: subscription refused {codes.hex()} for {topics}")

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1 PUBLISH; the PUBACK is counted when it comes, never waited for."""
        self.published += 1
        self._send(publish_packet(topic, payload, self._packet_id()))

    def _send(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_packet(self) -> tuple[int, int, bytes]:
        assert self._reader is not None
        first = await self._reader.readexactly(1)
        length, shift = 0, 0
        while True:
            (byte,) = await self._reader.readexactly(1)
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        body = await self._reader.readexactly(length) if length else b""
        return first[0] >> 4, first[0] & 0x0F, body

    async def _read_loop(self) -> None:
        reason = "closed by the broker"
        try:
            while True:
                kind, flags, body = await self._read_packet()
                if kind == PUBLISH:
                    topic, packet_id, payload = parse_publish(flags, body)
                    if packet_id is not None:
                        self._send(packet(PUBACK, 0, struct.pack(">H", packet_id)))
                    self.received += 1
                    self.on_message(topic, payload)
                elif kind == PUBACK:
                    self.acked += 1
                elif kind == SUBACK:
                    (packet_id,) = struct.unpack_from(">H", body)
                    waiter = self._subacks.pop(packet_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(body[2:])
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError) as err:
            reason = f"{type(err).__name__}: {err}"
        except Exception as err:  # a bug in a message handler must end this session only, and say why
            reason = f"handler failed: {type(err).__name__}: {err}"
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(reason)

    async def _ping_loop(self) -> None:
        assert self.closed is not None
        while not self.closed.done():
            await asyncio.sleep(self.keepalive / 2)
            self._send(packet(PINGREQ, 0, b""))

    async def disconnect(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(packet(DISCONNECT, 0, b""))
            self._writer.close()
            with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, OSError):
                await asyncio.wait_for(self._writer.wait_closed(), 5)
