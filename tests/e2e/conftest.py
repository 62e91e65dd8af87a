"""Fixtures for end-to-end tests with real processes: moto server, mosquitto (mTLS), API, bridge, agents.

One shared stack per pytest-xdist worker (`e2e_stack`, session scope); tests that break the stack
(restarting the broker) or target a whole model (the demo scenario) start their own with `own_stack`.
Agents run through local.scenario.Session (the demo's own tooling); MQTT clients come from
tests/local/conftest.py. Every device gets a unique EPN so tests sharing a stack never see each other.
"""

from __future__ import annotations

import io
import itertools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local import procs, stack
from local.ca import Issued
from local.scenario import Agent, Session
from tests.local.conftest import Client, connect

WAIT = 120.0  # generous: a loaded 2-core machine runs the stack, agents and the other worker
PAYLOAD = 512 * 1024
_names = itertools.count(1)


@contextmanager
def own_stack(directory: Path) -> Iterator[dict[str, Any]]:
    state = stack.up(stack.StackOptions(directory, sweep_every=1.0))
    try:
        yield state
    finally:
        stack.stop_all(directory)


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with own_stack(tmp_path_factory.mktemp("e2e") / "stack") as state:
        yield state


@dataclass(frozen=True)
class Release:
    """A registered publisher key and an AVAILABLE package of app `e2e` for MODEL."""

    pub: Path
    key: Path
    package: Path
    upload_id: str
    size: int


MODEL = "e2e-m"


def make_release(s: Session, size: int = PAYLOAD) -> Release:
    keys = s.work / "keys"
    s.pack("keygen", "--out", str(keys))
    (s.work / "src" / "bin").mkdir(parents=True)
    (s.work / "src" / "bin" / "app").write_bytes(os.urandom(size))
    package = s.work / "e2e-1.0.0.otapkg"
    s.pack("build", str(s.work / "src"), "--app", "e2e", "--version", "1.0.0", "--model", MODEL, "--key",
           str(keys / "publisher.key"), "--compression", "none", "--out", str(package))
    assert s.ota("keys", "add", str(keys / "publisher.pub"), "--name", f"e2e-{secrets.token_hex(4)}").code == 0
    done = s.ota("--json", "packages", "upload", str(package), "--timeout", str(WAIT))
    assert done.code == 0, done.out + done.err
    answer = done.json()
    return Release(keys / "publisher.pub", keys / "publisher.key", package, answer["upload_id"], answer["size"])


@pytest.fixture(scope="session")
def release(e2e_stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Release:
    return make_release(Session(e2e_stack, tmp_path_factory.mktemp("release"), stream=io.StringIO()))


@pytest.fixture
def on_stack(e2e_stack: dict[str, Any], tmp_path: Path) -> Iterator[Session]:
    """A scenario session on the shared stack whose agents are stopped after the test."""
    s = Session(e2e_stack, tmp_path, stream=io.StringIO())
    yield s
    s.stop_agents()


def unique_epn(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}-{secrets.token_hex(2)}"


def _online(s: Session, agent: Agent) -> bool:
    device = s.device(agent.epn)
    # registration sets last_seen = registered_at; the inventory the agent publishes once connected moves it
    seen, registered = device.get("last_seen"), device.get("registered_at")
    return device["state"] == "REGISTERED" and bool(seen and registered and seen > registered)


def wait_registered(s: Session, *agents: Agent) -> None:
    """Until every agent registered and reported its inventory over MQTT (it is connected)."""
    assert s.wait_for("registration", lambda: all(_online(s, a) for a in agents), WAIT), \
        [procs.log_tail(a.process) for a in agents]


def create_job(s: Session, upload_id: str, epns: list[str], block_size: int = 16384, window: int = 16) -> str:
    job = s.api.post("/jobs", {"package_id": upload_id, "targets": {"devices": epns}, "block_size": block_size,
                               "window": window})
    job_id = str(job["job_id"])  # its executions come from the fan-out queue, which the bridge pumps
    assert s.wait_for("the job's fan-out", lambda: s.api.get(f"/jobs/{job_id}")["fanout_done"], WAIT)
    return job_id


def execution(s: Session, job_id: str, epn: str) -> dict[str, Any]:
    return s.api.get(f"/jobs/{job_id}/executions/{epn}")  # type: ignore[no-any-return]


def wait_execution(s: Session, job_id: str, epn: str, until: Callable[[dict[str, Any]], bool],
                   timeout: float = WAIT) -> dict[str, Any]:
    """Poll the execution until `until` holds; returns the last view seen (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    seen = execution(s, job_id, epn)
    while not until(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = execution(s, job_id, epn)
    return seen


def terminal(view: dict[str, Any]) -> bool:
    return view["state"] in ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED")


def agent_identity(agent: Agent) -> Issued:
    tls = agent.data_dir / "tls"
    return Issued(tls / "device.crt", tls / "device.key")


def operator(state: dict[str, Any]) -> Issued:
    return Issued(Path(state["certs"]["operator"]["cert"]), Path(state["certs"]["operator"]["key"]))


@pytest.fixture
def mqtt_as(e2e_stack: dict[str, Any]) -> Iterator[Callable[[Issued], Client | str]]:
    """Connect to the shared stack's broker with a certificate; a Client, or why it could not connect."""
    made: list[Client] = []

    def make(issued: Issued, state: dict[str, Any] | None = None) -> Client | str:
        state = state or e2e_stack
        holder = connect(state["mqtt"]["port"], Path(state["mqtt"]["ca"]), issued)
        if isinstance(holder, Client):
            made.append(holder)
        return holder

    yield make
    for holder in made:
        holder.client.disconnect()
        holder.client.loop_stop()
