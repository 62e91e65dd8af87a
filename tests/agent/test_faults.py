"""The generic guard: an exception anywhere in a step, a timer or a handler ends the execution FAILED
(through the table, persisted), and the agent takes the next job. Faults are injected with doubles of
the installer, the transport and the HTTP session, never by patching modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

from agent.config import Config
from agent.installer import Installer
from agent.transport import Connected

from .conftest import FakeTransport, Harness
from .httpfakes import CountingSession, ExplodingSession
from .pkgtools import build_package, deliver, job_for


class FaultyInstaller(Installer):
    """The real installer, except that each method named in `fail` raises RuntimeError once."""

    def __init__(self, config: Config, *fail: str) -> None:
        super().__init__(os.path.realpath(config.install_root), config.data_dir, config.script_timeout)
        self.fail = set(fail)

    def _maybe(self, name: str) -> None:
        if name in self.fail:
            self.fail.discard(name)
            raise RuntimeError(f"injected fault in {name}")

    def current_target(self, app: str) -> str | None:
        self._maybe("current_target")
        return super().current_target(app)

    def write_version(self, verified: Any) -> str:
        self._maybe("write_version")
        return super().write_version(verified)

    def remove_version(self, app: str, version: str) -> None:
        self._maybe("remove_version")
        super().remove_version(app, version)

    def clear_run(self, app: str) -> None:
        self._maybe("clear_run")
        super().clear_run(app)


class FaultyTransport(FakeTransport):
    """Raises once when publishing to `leaf` a payload containing `part`."""

    def __init__(self, leaf: str, part: bytes = b"") -> None:
        super().__init__()
        self.fail_leaf: str | None = leaf
        self.part = part

    def publish(self, topic_name: str, payload: bytes, *, wait: float = 0.0) -> bool:
        if self.fail_leaf and topic_name.endswith("/" + self.fail_leaf) and self.part in payload:
            self.fail_leaf = None
            raise RuntimeError(f"injected fault publishing {topic_name}")
        return super().publish(topic_name, payload, wait=wait)


@dataclass
class Case:
    installer: tuple[str, ...] = ()  # FaultyInstaller methods that raise once
    transport: str | None = None  # leaf whose first publish (of a payload containing `part`) raises
    part: bytes = b""
    republish: bool = False  # the cloud sends the job document again after the fault
    http: bool = False  # URL mode with a session whose first get raises
    expect: tuple[str, ...] = ()  # terminal state, then substrings of the reason
    active: str = "1.0.0"  # version `current` points to afterwards


CASES = {
    "handler, DOWNLOADING (ack publish)": Case(transport="ack", expect=(
        "FAILED", "agent error while handling Message in DOWNLOADING", "injected fault publishing")),
    "timer, DOWNLOADING (URL session)": Case(http=True, expect=(
        "FAILED", "agent error while running timers in DOWNLOADING", "ValueError")),
    "step, VERIFYING": Case(installer=("current_target",), expect=(
        "FAILED", "in VERIFYING", "injected fault in current_target")),
    "step, INSTALLING: rolled back": Case(installer=("write_version",), expect=(
        "FAILED", "in INSTALLING", "injected fault in write_version")),
    "step, INSTALLING then ROLLING_BACK: never loops": Case(installer=("write_version", "remove_version"), expect=(
        "FAILED", "injected fault in write_version", "then agent error", "in ROLLING_BACK")),
    "COMMITTING after the commit persisted: not rolled back": Case(installer=("clear_run",), expect=(
        "SUCCEEDED",), active="2.0.0"),
    "REPORTING: the outcome stands and answers the job document": Case(
        transport="status", part=b'"SUCCEEDED"', republish=True, expect=("SUCCEEDED",), active="2.0.0"),
}


def current(h: Harness) -> str | None:
    link = os.path.join(h.config.install_root, "demo", "current")
    return os.readlink(link) if os.path.islink(link) else None


@pytest.mark.parametrize("name", list(CASES))
def test_a_fault_ends_the_execution_and_the_agent_takes_the_next_job(config, publisher, name):
    case = CASES[name]
    key, _ = publisher
    installer = FaultyInstaller(config)
    h = Harness(config, FaultyTransport(""), installer=installer, http=ExplodingSession())
    deliver(h, *build_package(key, version="1.0.0"))  # a healthy install first: the doubles pass through
    installer.fail = set(case.installer)
    h.transport.fail_leaf, h.transport.part = case.transport, case.part
    package, envelope = build_package(key, version="2.0.0", files={"bin/app": os.urandom(3000)})
    if case.http:
        job = job_for(package, envelope, mode="url", url="http://127.0.0.1:9/never-fetched")
        h.job(job)
    else:
        job = deliver(h, package, envelope, window=2)
    if case.republish:
        h.job(job)
    final = h.transport.terminal()[-1]
    assert final.execution_id == job.execution_id and final.state == case.expect[0]
    for part in case.expect[1:]:
        assert part in (final.reason or ""), final.reason
    assert h.agent.state == "IDLE" and current(h) == case.active
    assert h.agent.store.data["apps"]["demo"] == case.active
    following = deliver(h, *build_package(key, version="3.0.0"))  # responsive: the next job is taken
    assert [(s.execution_id, s.state) for s in h.transport.terminal()][-1] == (following.execution_id, "SUCCEEDED")
    assert current(h) == "3.0.0"


def test_restart_after_a_fault_reports_it_and_never_resumes_the_download(config, publisher):
    key, _ = publisher
    h = Harness(config, http=ExplodingSession())
    h.transport.connected = False  # offline: the outcome waits, persisted, in REPORTING
    package, envelope = build_package(key)
    job = job_for(package, envelope, mode="url", url="http://127.0.0.1:9/pkg")
    h.job(job)
    assert h.agent.state == "REPORTING" and h.agent.store.data["outcome"]["state"] == "FAILED"
    fresh_session = CountingSession()
    h.inject["http"] = fresh_session
    h.restart()
    assert h.agent.state == "REPORTING"
    h.transport.connected = True
    h.idle(1)
    (final,) = h.transport.terminal()
    assert (final.execution_id, final.state) == (job.execution_id, "FAILED") and "ValueError" in final.reason
    assert fresh_session.requests == 0 and h.agent.state == "IDLE"


def test_a_fault_outside_any_execution_drops_the_input_and_the_agent_goes_on(config, publisher):
    h = Harness(config, FaultyTransport("status"))
    h.agent.handle(Connected())  # the inventory publish raises: IDLE, no execution to end
    assert h.agent.dropped == {"error": 1} and h.agent.state == "IDLE"
    job = deliver(h, *build_package(publisher[0]))
    assert [(s.execution_id, s.state) for s in h.transport.terminal()] == [(job.execution_id, "SUCCEEDED")]
