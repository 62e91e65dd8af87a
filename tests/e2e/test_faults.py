"""Faults on the full stack with real processes: a killed agent, a restarted broker, an agent offline at
job creation. Assertions come from the cloud side (the API, an operator MQTT subscription)."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from local import mosquitto, procs
from local.scenario import Session
from otaformat import topics, wire
from tests.local.conftest import Client, connect

from .conftest import (
    WAIT,
    Release,
    create_job,
    execution,
    make_release,
    operator,
    own_stack,
    terminal,
    unique_epn,
    wait_execution,
    wait_registered,
)

pytestmark = pytest.mark.e2e
SMALL_BLOCK = 1024  # many blocks and a small window: a transfer long enough to interrupt
SMALL_WINDOW = 4


def _frames(sniffer: Client, epn: str, since: int = 0) -> list[wire.BlockFrame]:
    return [wire.decode_frame(p) for t, p in sniffer.received[since:] if t == topics.topic(epn, "blk")]


def _requests(sniffer: Client, epn: str, since: int = 0) -> list[wire.BlockRequest]:
    return [wire.decode_request(p) for t, p in sniffer.received[since:] if t == topics.topic(epn, "get")]


def _acked(sniffer: Client, epn: str, total: int) -> set[int]:
    have: set[int] = set()
    for t, p in list(sniffer.received):
        if t == topics.topic(epn, "ack"):
            have |= wire.decode_ack(p).received(total)
    return have


def test_an_agent_killed_mid_transfer_resumes_and_asks_only_for_missing_blocks(
        on_stack: Session, release: Release, mqtt_as: Any) -> None:
    agent = on_stack.start_agent(unique_epn("kill"), "e2e-m", release.pub)
    wait_registered(on_stack, agent)
    sniffer = mqtt_as(operator(on_stack.state))
    assert isinstance(sniffer, Client), sniffer
    sniffer.subscribe(*(topics.topic(agent.epn, leaf) for leaf in ("blk", "get", "ack")))
    total = wire.block_count(release.size, SMALL_BLOCK)
    job_id = create_job(on_stack, release.upload_id, [agent.epn], SMALL_BLOCK, SMALL_WINDOW)

    assert sniffer.wait_for(lambda _: len(_frames(sniffer, agent.epn)) >= total // 3, WAIT), "no transfer"
    os.killpg(agent.process.pid, signal.SIGKILL)
    assert _dead(agent.process)
    time.sleep(1.0)  # acks in flight reach the sniffer
    held = _acked(sniffer, agent.epn, total)
    assert 0 < len(held) < total, f"killed too late or too early: {len(held)}/{total} blocks acknowledged"
    before_restart = len(sniffer.received)
    on_stack.restart_agent(agent)

    view = wait_execution(on_stack, job_id, agent.epn, terminal)
    assert view["state"] == "SUCCEEDED", view
    asked = _requests(sniffer, agent.epn, before_restart)
    assert asked, "the restarted agent sent no block request"
    first = set(asked[0].wanted(total))
    assert first and not first & held, "the first request after the restart names blocks the agent already had"
    sent = len(_frames(sniffer, agent.epn))
    assert sent < 1.5 * total, f"{sent} blocks published for {total}: the transfer restarted instead of resuming"
    counters = (view["blocks_sent"], view["retransmissions"])
    assert total <= view["blocks_sent"] < 1.5 * total and view["retransmissions"] < total // 2, counters


def _dead(started: procs.Started) -> bool:
    deadline = time.monotonic() + WAIT
    while procs.is_alive(started.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not procs.is_alive(started.pid)


def test_an_agent_offline_when_its_job_was_created_gets_it_when_it_comes_back(
        on_stack: Session, release: Release) -> None:
    agent = on_stack.start_agent(unique_epn("offline"), "e2e-m", release.pub)
    wait_registered(on_stack, agent)
    on_stack.stop_agents()
    job_id = create_job(on_stack, release.upload_id, [agent.epn])
    time.sleep(2.0)  # the job document goes out while nobody listens
    assert execution(on_stack, job_id, agent.epn)["state"] == "QUEUED"
    on_stack.restart_agent(agent)
    view = wait_execution(on_stack, job_id, agent.epn, terminal)
    assert view["state"] == "SUCCEEDED", view
    assert [line.split()[1:] for line in on_stack.agents[0].history_lines()] == [["e2e", "1.0.0", "SUCCEEDED"]]


def test_a_job_succeeds_although_the_broker_restarts_mid_transfer(tmp_path: Path) -> None:
    with own_stack(tmp_path / "stack") as state:
        s = Session(state, tmp_path, stream=io.StringIO())
        try:
            release = make_release(s)
            agent = s.start_agent(unique_epn("broker"), "e2e-m", release.pub)
            wait_registered(s, agent)
            total = wire.block_count(release.size, SMALL_BLOCK)
            job_id = create_job(s, release.upload_id, [agent.epn], SMALL_BLOCK, SMALL_WINDOW)
            view = wait_execution(s, job_id, agent.epn,
                                  lambda v: terminal(v) or v["blocks_acked"] >= total // 4)
            assert view["state"] == "IN_PROGRESS", f"transfer not interrupted: {view['state']}"
            _restart_broker(state, tmp_path / "stack")
            view = wait_execution(s, job_id, agent.epn, terminal)
            assert view["state"] == "SUCCEEDED", view
            assert 0 < view["blocks_acked"] == total
        finally:
            s.stop_agents()


def _restart_broker(state: dict[str, Any], directory: Path) -> None:
    """Stop the stack's mosquitto (SIGKILL, like a crash) and start it again on the same port and files."""
    old = next(procs.Started.from_dict(p) for p in state["processes"] if p["name"] == "mosquitto")
    os.killpg(old.pid, signal.SIGKILL)
    assert _dead(old)
    port = state["mqtt"]["port"]
    ca = directory / "ca"
    files = mosquitto.BrokerFiles(ca / "ca.pem", directory / "certs" / "server.pem", directory / "certs" / "server.key",
                                  ca / "crl.pem")
    mosquitto.start(directory / "mosquitto", files, [c["cn"] for c in state["certs"].values()], port=port)
    probe = connect(port, Path(state["mqtt"]["ca"]), operator(state))
    assert isinstance(probe, Client), probe
    probe.client.disconnect()
    probe.client.loop_stop()
