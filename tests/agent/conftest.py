"""Fixtures for the agent tests: keys, packages, an in-memory transport, a fake clock, agents, mosquitto."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from agent.config import Config
from agent.runtime import Agent
from agent.transport import Message
from otaformat import messages
from otaformat.signing import key_id
from otaformat.topics import topic

from .pkgtools import new_key

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class FakeTransport:
    """In-memory transport: records publications; `connected` can be flipped by the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.connected = True
        self.sink = None
        self.following: set[str] = set()  # group topics (docs/protocol.md section 15)
        self.left: list[str] = []

    def follow(self, topic_name: str) -> None:
        self.following.add(topic_name)

    def unfollow(self, topic_name: str) -> None:
        self.following.discard(topic_name)
        self.left.append(topic_name)

    def start(self, sink) -> None:
        self.sink = sink

    def publish(self, topic_name: str, payload: bytes, *, wait: float = 0.0) -> bool:
        if not self.connected and wait > 0:
            return False
        self.sent.append((topic_name, payload))
        return True

    def stop(self) -> None:
        pass

    def leaf(self, name: str) -> list[bytes]:
        return [p for t, p in self.sent if t.endswith("/" + name) and t.count("/") == 2]

    def statuses(self) -> list[messages.Status]:
        out = []
        for p in self.leaf("status"):
            msg = messages.decode(p)
            if isinstance(msg, messages.Status):
                out.append(msg)
        return out

    def terminal(self) -> list[messages.Status]:
        return [s for s in self.statuses() if s.state != "IN_PROGRESS"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def publisher():
    return new_key()


@pytest.fixture
def config(tmp_path, publisher) -> Config:
    key, _ = publisher
    public = key.public_key()
    return Config(epn="dev-1", model="m1", data_dir=str(tmp_path / "data"), install_root=str(tmp_path / "root"),
                  trusted_keys={key_id(public): public}, installed_apps={}, script_timeout=5.0, stall_budget=30.0)


class Harness:
    """An Agent on a FakeTransport and FakeClock, driven turn by turn (Agent.handle) like its run loop would.

    `inject` is passed to every Agent it makes (e.g. installer=..., http=... doubles)."""

    def __init__(self, config: Config, transport: FakeTransport | None = None, **inject) -> None:
        self.config = config
        self.transport = transport or FakeTransport()
        self.clock = FakeClock()
        self.inject = inject
        self.agent = self.fresh()

    def fresh(self) -> Agent:
        self.agent = Agent(self.config, self.transport, clock=self.clock, wall=lambda: NOW, **self.inject)
        self.agent.start()
        self.agent.run_steps()
        return self.agent

    def restart(self, **changes) -> Agent:
        self.config = replace(self.config, **changes) if changes else self.config
        return self.fresh()

    def send(self, leaf: str, payload: bytes) -> None:
        self.agent.handle(Message(leaf, payload))

    def job(self, job: messages.JobDocument) -> None:
        self.send("job", messages.encode(job))

    def idle(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.agent.handle(None)


@pytest.fixture
def harness(config) -> Harness:
    return Harness(config)


def topic_of(epn: str, leaf: str) -> str:
    return topic(epn, leaf)


# -- a real mosquitto on a free loopback port --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user() -> str:
    """Run mosquitto as ourselves: started as root it would switch to 'mosquitto' and not read tmp files."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "root" if os.geteuid() == 0 else "mosquitto"


class Broker:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.conf = os.path.join(directory, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                    f"persistence true\npersistence_location {directory}/\nmax_queued_messages 100000\n"
                    f"max_inflight_messages 100\nuser {_user()}\n")

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        log = open(os.path.join(self.directory, "mosquitto.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([exe, "-c", self.conf], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def broker(tmp_path) -> Iterator[Broker]:
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    directory = tmp_path / "broker"
    directory.mkdir()
    b = Broker(str(directory))
    b.start()
    yield b
    b.stop()
