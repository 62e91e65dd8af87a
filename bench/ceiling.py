"""The raw transfer ceiling: a bare paho sender and a bare paho receiver on one broker.

Same scheme as the service (QoS 1, up to W blocks in flight, selective acks sent every W/2 blocks or
on completion) with no cloud processing in between. `bench.transfer` runs it beside the real path, on
the local stack's broker with `tls_factory` (certificates from the stack's CA), and prints our goodput
divided by this ceiling. Not a test; prints figures only.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from otaformat import wire

ClientFactory = Callable[[str], mqtt.Client]


@dataclass(frozen=True)
class CeilingResult:
    block_size: int
    window: int
    blocks: int
    seconds: float
    acks: int

    @property
    def mb_per_s(self) -> float:
        return self.blocks * self.block_size / self.seconds / 1e6

    @property
    def acks_per_block(self) -> float:
        return self.acks / self.blocks


def publish_packet_bytes(topic: str, payload_len: int) -> int:
    """Bytes of one QoS 1 MQTT 3.1.1 PUBLISH packet on the wire (TLS framing not counted)."""
    remaining = 2 + len(topic.encode()) + 2 + payload_len
    varint = 1 if remaining < 128 else 2 if remaining < 16384 else 3 if remaining < 2097152 else 4
    return 1 + varint + remaining


def nodelay(client: mqtt.Client) -> None:
    def _on_open(_client: mqtt.Client, _userdata: object, sock: object) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = _on_open


def _connected(client: mqtt.Client, host: str, port: int) -> mqtt.Client:
    """Large in-flight window, unbounded queue, TCP_NODELAY, then connect."""
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    nodelay(client)
    client.connect(host, port)
    return client


def plain_factory(host: str, port: int) -> ClientFactory:
    def make(client_id: str) -> mqtt.Client:
        return _connected(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id), host, port)

    return make


def tls_factory(host: str, port: int, ca: str, credentials: Callable[[str], tuple[str, str]]) -> ClientFactory:
    """Clients for a broker with mutual TLS; `credentials(client_id)` gives the (cert, key) files to use.

    On a broker with `use_username_as_clientid` (the local stack) the certificate's CN is the client id.
    """

    def make(client_id: str) -> mqtt.Client:
        cert, key = credentials(client_id)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
        return _connected(client, host, port)

    return make


def _wait_connected(client: mqtt.Client) -> None:
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise RuntimeError("could not connect to the broker")
        time.sleep(0.01)


def measure_ceiling(factory: ClientFactory, *, block_size: int, window: int, total_bytes: int,
                    device: str = "ceiling-dev") -> CeilingResult:
    blocks = wire.block_count(total_bytes, block_size)
    data = bytes(block_size)
    blk_topic, ack_topic = f"ota/{device}/blk", f"ota/{device}/ack"
    done = threading.Event()
    state = {"next": 0, "acked": 0, "acks": 0}
    lock = threading.Lock()

    receiver = factory(f"{device}")
    sender = factory("ota-cloud")
    have: set[int] = set()
    since_ack = [0]

    def on_block(client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        frame = wire.decode_frame(msg.payload)
        if frame.index in have:
            return
        have.add(frame.index)
        since_ack[0] += 1
        if since_ack[0] >= max(1, window // 2) or len(have) == blocks:
            since_ack[0] = 0
            ack = wire.make_ack("x", 1, have, blocks)
            client.publish(ack_topic, wire.encode_ack(ack), qos=1)

    def send_more() -> None:
        with lock:
            while state["next"] < blocks and state["next"] - state["acked"] < window:
                index = state["next"]
                state["next"] += 1
                sender.publish(blk_topic, wire.encode_frame(1, index, blocks, data), qos=1)

    def on_ack(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        ack = wire.decode_ack(msg.payload)
        with lock:
            state["acks"] += 1
            state["acked"] = max(state["acked"], ack.contiguous)
        if ack.contiguous >= blocks:
            done.set()
        else:
            send_more()

    receiver.on_message = on_block
    sender.on_message = on_ack
    receiver.loop_start()
    sender.loop_start()
    _wait_connected(receiver)
    _wait_connected(sender)
    receiver.subscribe(blk_topic, qos=1)
    sender.subscribe(ack_topic, qos=1)
    time.sleep(0.3)
    start = time.perf_counter()
    send_more()
    if not done.wait(timeout=300):
        raise RuntimeError("ceiling transfer did not finish")
    seconds = time.perf_counter() - start
    for client in (receiver, sender):
        client.disconnect()
        client.loop_stop()
    return CeilingResult(block_size, window, blocks, seconds, state["acks"])
