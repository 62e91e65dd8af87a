"""The agent updating itself: installed but not committed until the new agent (another run) connects and
confirms; the launcher execs the installed agent, and restores the previous one when the new one dies
before confirming or misses the deadline; the old agent then reports FAILED with the reason."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta

import pytest

from agent.machine import State
from agent.selfupdate import TRIAL_EXIT, launch

from .conftest import NOW, Harness
from .pkgtools import build_package, frames, job_for


@pytest.fixture
def updating(config):
    return replace(config, self_update_app="ota-agent", trial_seconds=60.0)


def install_agent(h: Harness, key, version: str = "1.1.0") -> None:
    package, envelope = build_package(key, app="ota-agent", version=version, kind="agent",
                                      files={"bin/ota-agent": b"#!/bin/sh\nexit 3\n"})
    job = job_for(package, envelope)
    h.job(job)
    for frame in frames(job, package):
        h.send("blk", frame)


def history(h: Harness) -> list[str]:
    try:
        with open(os.path.join(h.config.data_dir, "history.txt")) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def test_the_new_agent_is_committed_only_after_it_confirms(updating, publisher):
    h = Harness(updating)
    install_agent(h, publisher[0])
    agent = h.agent
    assert agent.state == State.TRIAL and agent.restart_code == TRIAL_EXIT and agent.stop_event.is_set()
    assert "ota-agent" not in agent.store.data["apps"] and history(h) == []  # not committed yet
    assert h.transport.terminal() == []
    assert os.readlink(os.path.join(updating.install_root, "ota-agent", "current")) == "1.1.0"
    h.restart()  # the new agent (another run) connects, reports, and confirms
    assert h.agent.state == State.IDLE
    assert [s.state for s in h.transport.terminal()] == ["SUCCEEDED"]
    assert h.agent.store.data["apps"]["ota-agent"] == "1.1.0" and history(h)[-1].endswith("ota-agent 1.1.0 SUCCEEDED")


@pytest.mark.parametrize(("starts", "late", "said"), [
    (1, 0, "stopped before it confirmed"),
    (0, 61, "did not confirm within 60 s"),
])
def test_the_launcher_restores_the_previous_agent(updating, publisher, starts, late, said):
    h = Harness(updating)
    install_agent(h, publisher[0])
    entry = os.path.join(updating.install_root, "ota-agent", "current", "bin", "ota-agent")
    os.chmod(entry, 0o755)
    h.agent.store.data["trial"]["starts"] = starts
    h.agent.store.save()
    assert launch(updating, ["--config", "x"], NOW + timedelta(seconds=late)) is None  # back to the factory agent
    assert not os.path.lexists(os.path.join(updating.install_root, "ota-agent", "current"))
    h.restart()  # the previous agent finishes the rollback and reports
    [status] = h.transport.terminal()
    assert status.state == "FAILED" and said in status.reason and "previous agent restored" in status.reason
    assert "ota-agent" not in h.agent.store.data["apps"] and h.agent.state == State.IDLE


def test_the_first_start_of_a_trial_runs_the_new_agent(updating, publisher):
    h = Harness(updating)
    install_agent(h, publisher[0])
    entry = os.path.join(updating.install_root, "ota-agent", "current", "bin", "ota-agent")
    os.chmod(entry, 0o755)
    assert launch(updating, ["--config", "x"], NOW) == [entry, "--config", "x"]
    h.restart()  # here the same code plays the new agent: it confirms
    assert h.agent.store.data["trial"] is None and h.agent.store.data["apps"]["ota-agent"] == "1.1.0"


def test_a_new_agent_that_cannot_confirm_restores_the_old_one_itself(updating, publisher):
    h = Harness(updating)
    install_agent(h, publisher[0])
    h.transport.connected = False
    h.restart(trial_seconds=60.0)
    h.agent.wall = lambda: NOW + timedelta(seconds=61)
    h.idle(1)
    assert h.agent.restart_code == TRIAL_EXIT and h.agent.store.data["state"] == "ROLLING_BACK"
    assert not os.path.lexists(os.path.join(updating.install_root, "ota-agent", "current"))


def test_other_agent_packages_install_like_apps(config, publisher):
    h = Harness(config)  # no [self_update]: an agent-kind package for another app is just installed
    install_agent(h, publisher[0])
    assert h.agent.state == State.IDLE and [s.state for s in h.transport.terminal()] == ["SUCCEEDED"]
