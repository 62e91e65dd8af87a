"""Staged rollout on the whole local stack: real agents, mosquitto, the bridge's fan-out queue and its
scheduled sweeper. Waves of one device with no pause: the second agent gets its job only after the
first one's execution finished (the order is read from the cloud's own timelines, not timed), and each
wave has its own group topic (`ota/g/{model}/{job_id}-w{wave}/blk`) that the broker lets its device read:
each agent receives its blocks from its wave's broadcast, not by unicast."""

from __future__ import annotations

import pytest

from local.scenario import Session
from otaformat import topics
from tests.local.conftest import Client

from .conftest import (
    MODEL,
    WAIT,
    Release,
    execution,
    operator,
    terminal,
    unique_epn,
    wait_execution,
    wait_registered,
)
from .test_group_delivery import wait_roles

pytestmark = pytest.mark.e2e


def test_two_agents_in_two_waves_succeed_one_after_the_other(on_stack: Session, release: Release,
                                                             mqtt_as) -> None:
    agents = [on_stack.start_agent(unique_epn("wave"), MODEL, release.pub) for _ in range(2)]
    wait_registered(on_stack, *agents)
    wait_roles(on_stack, *agents)
    counter = mqtt_as(operator(on_stack.state))
    assert isinstance(counter, Client), counter
    first, second = agents
    counter.subscribe("ota/g/+/+/blk", f"ota/{first.epn}/blk", f"ota/{second.epn}/blk")
    job = on_stack.api.post("/jobs", {"package_id": release.upload_id, "block_size": 4096, "window": 8,
                                      "targets": {"devices": [first.epn, second.epn]}, "waves": {"size": 1}})
    job_id = str(job["job_id"])
    assert job["waves"]["current"] == 0 and job["waves"]["size"] == 1
    assert on_stack.wait_for("the job's fan-out", lambda: on_stack.api.get(f"/jobs/{job_id}")["fanout_done"], WAIT)
    assert execution(on_stack, job_id, second.epn)["wave"] == 1
    done = wait_execution(on_stack, job_id, first.epn, terminal)
    assert done["state"] == "SUCCEEDED", done
    later = wait_execution(on_stack, job_id, second.epn, terminal)
    assert later["state"] == "SUCCEEDED", later
    started = next(t["at"] for t in later["timeline"] if t["reason"] == "wave 1 started")
    finished = next(t["at"] for t in done["timeline"] if t["state"] == "SUCCEEDED")
    assert started >= finished, (done["timeline"], later["timeline"])
    assert [t["state"] for t in later["timeline"]][:2] == ["WAITING", "QUEUED"]
    assert on_stack.wait_for("the job's completion",
                             lambda: on_stack.api.get(f"/jobs/{job_id}")["state"] == "COMPLETED", WAIT)
    final = on_stack.api.get(f"/jobs/{job_id}")["waves"]
    assert final["current"] == 1 and final["total"] == 2
    assert [w["counts"]["SUCCEEDED"] for w in final["recent"]] == [1, 1]
    blocks = int(done["blocks_total"])
    received = list(counter.received)
    for wave, agent in enumerate(agents):
        broadcast = sum(t == topics.group_block_topic(MODEL, f"{job_id}-w{wave}") for t, _ in received)
        unicast = sum(t == f"ota/{agent.epn}/blk" for t, _ in received)
        print(f"\nwave {wave}: {broadcast} broadcast, {unicast} unicast frames for {blocks} blocks")
        assert broadcast >= blocks and unicast < blocks  # its blocks came from its wave's group topic
