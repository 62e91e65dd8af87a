"""Fixtures for the local stack's tests: a CA in tmp_path, a real mosquitto with mTLS, MQTT clients."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from local import mosquitto, procs, stack
from local.ca import Issued, LocalCA
from local.forwarder import set_nodelay

CLOUD = "ota.cloud.test"
WAIT = 30.0  # generous: the suite runs on a loaded 2-core machine


@dataclass
class Broker:
    port: int
    ca: LocalCA
    certs: Path
    process: procs.Started
    files: mosquitto.BrokerFiles

    def restart(self, directory: Path) -> None:
        procs.stop(self.process)
        self.process, self.port = mosquitto.start(directory, self.files, [CLOUD])


@dataclass
class Client:
    """A connected paho client that records what it receives."""

    client: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes]]], bool], timeout: float = WAIT) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: predicate(self.received), timeout)

    def subscribe(self, *topics: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(WAIT), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT)


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return LocalCA.create_or_load(tmp_path / "ca")


@pytest.fixture
def broker(tmp_path: Path, ca: LocalCA) -> Iterator[Broker]:
    if mosquitto.find_program("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run 'python -m local.osdeps'")
    certs = tmp_path / "certs"
    server = ca.server_cert(certs)
    ca.issue(certs, "cloud", CLOUD)
    files = mosquitto.BrokerFiles(ca.cert_path, server.cert, server.key, ca.crl_path)
    process, port = mosquitto.start(tmp_path / "mosquitto", files, [CLOUD])
    b = Broker(port, ca, certs, process, files)
    yield b
    procs.stop(b.process)


def connect(port: int, ca_file: Path, issued: Issued, client_id: str = "") -> Client | str:
    """A connected client, or the reason the connection failed."""
    holder = Client(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id))
    c = holder.client
    c.tls_set(ca_certs=str(ca_file), certfile=str(issued.cert), keyfile=str(issued.key))
    outcome: dict[str, object] = {}
    connected = threading.Event()

    def on_connect(client: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        outcome["reason"] = reason
        set_nodelay(client)
        connected.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with holder.arrived:
            holder.received.append((message.topic, message.payload))
            holder.arrived.notify_all()

    c.on_connect = on_connect
    c.on_message = on_message
    c.on_connect_fail = lambda *_: connected.set()
    c.on_disconnect = lambda *_: connected.set()
    try:
        c.connect("127.0.0.1", port, keepalive=30)
    except OSError as err:  # TLS handshake refused
        return f"refused: {err}"
    c.loop_start()
    if not connected.wait(WAIT) or not c.is_connected():
        c.loop_stop()
        return f"not connected: {outcome.get('reason')}"
    return holder


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for holder in made:
        holder.client.disconnect()
        holder.client.loop_stop()


@pytest.fixture
def connect_as(broker: Broker, clients: list[Client]) -> Callable[[str], Client]:
    """Connect with a fresh certificate whose CN is the given identity (a device EPN or a cloud name)."""

    def make(identity: str) -> Client:
        issued = broker.ca.issue(broker.certs, f"id-{identity}", identity)
        holder = connect(broker.port, broker.ca.cert_path, issued)
        assert isinstance(holder, Client), holder
        clients.append(holder)
        return holder

    return make


@pytest.fixture
def mosquitto_sub() -> str:
    path = shutil.which("mosquitto_sub") or mosquitto.find_program("mosquitto_sub")
    if path is None:
        pytest.fail("mosquitto_sub is not installed: run 'python -m local.osdeps'")
    return path


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole local stack (moto, mosquitto, API, bridge with handlers), one per pytest worker.

    Tests that restart the broker restart it on the same port (stack.restart_broker), so the others keep
    working."""
    directory = tmp_path_factory.mktemp("local") / "stack"
    state = stack.up(stack.StackOptions(directory, sweep_every=1.0))
    try:
        yield state
    finally:
        stack.stop_all(directory)
