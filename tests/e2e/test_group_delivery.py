"""Group delivery on the whole local stack (docs/protocol.md section 15): real agents take one job from
one broadcast per block, and a device cannot read the group topics of another model.

The block publishes are counted by a cloud-side MQTT client subscribed to every block topic (device
topics and group topics): what it sees is exactly what the cloud published. The ratio is printed; the
assertion is only the one that cannot depend on speed: fewer publishes than N devices x blocks.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from local import mosquitto
from local.scenario import Agent, Session
from otaformat import messages, topics, wire
from tests.local.conftest import Client

from .conftest import (
    MODEL,
    WAIT,
    Release,
    agent_identity,
    create_job,
    operator,
    terminal,
    unique_epn,
    wait_execution,
    wait_registered,
)

pytestmark = pytest.mark.e2e
AGENTS = 8


def broker_dir(s: Session) -> Path:
    return Path(s.state["directory"]) / "mosquitto"


def wait_roles(s: Session, *agents: Agent) -> None:
    """Until the broker's ACL holds each device's group-topic entry (the bridge rewrites it on registration)."""
    acl = broker_dir(s) / mosquitto.ACL_FILE
    ok = s.wait_for("group ACL entries", lambda: all(f"user {a.epn}\ntopic read ota/g/{a.model}/+/blk"
                                                     in acl.read_text() for a in agents), WAIT)
    assert ok, acl.read_text()[-2000:]


def test_one_broadcast_per_block_reaches_every_agent(on_stack: Session, release: Release, mqtt_as) -> None:
    agents = [on_stack.start_agent(unique_epn("grp"), MODEL, release.pub) for _ in range(AGENTS)]
    wait_registered(on_stack, *agents)
    wait_roles(on_stack, *agents)
    counter = mqtt_as(operator(on_stack.state))
    assert isinstance(counter, Client), counter
    counter.subscribe("ota/+/blk", "ota/g/+/+/blk")
    job_id = create_job(on_stack, release.upload_id, [a.epn for a in agents], block_size=4096, window=16)
    views = [wait_execution(on_stack, job_id, a.epn, terminal) for a in agents]
    assert [v["state"] for v in views] == ["SUCCEEDED"] * AGENTS, views
    blocks = int(views[0]["blocks_total"])
    group_topic = topics.group_block_topic(MODEL, job_id)
    epns = {a.epn for a in agents}
    ours = [(t, p) for t, p in list(counter.received) if t == group_topic or t.split("/")[1] in epns]
    per_topic = Counter(t for t, _ in ours)
    broadcast = per_topic[group_topic]
    unicast = sum(n for t, n in per_topic.items() if t != group_topic)
    publishes = broadcast + unicast
    print(f"\ngroup delivery, {AGENTS} agents x {blocks} blocks: {broadcast} broadcast + {unicast} unicast "
          f"= {publishes} block publishes; {publishes / (AGENTS * blocks):.3f} per device-block "
          f"(unicast would be 1.000; 1/N = {1 / AGENTS:.3f}; repair rate {unicast / (AGENTS * blocks):.3f})")
    assert broadcast >= blocks  # every block went out on the group topic at least once
    assert {wire.decode_frame(p).index for t, p in ours if t == group_topic} == set(range(blocks))
    assert publishes < AGENTS * blocks


def test_a_device_that_comes_online_after_the_group_finished_is_served_by_unicast(
        on_stack: Session, release: Release, mqtt_as) -> None:
    """Fallback with real agents: a member more than 4 windows behind the cursor is moved to unicast, is
    told so by its job document without `group`, leaves the group and completes by unicast."""
    agents = [on_stack.start_agent(unique_epn("grp"), MODEL, release.pub) for _ in range(3)]
    late = on_stack.start_agent(unique_epn("late"), MODEL, release.pub)
    wait_registered(on_stack, *agents, late)
    wait_roles(on_stack, *agents, late)
    assert on_stack.stop_agent(late)  # offline while the group runs
    counter = mqtt_as(operator(on_stack.state))
    assert isinstance(counter, Client), counter
    counter.subscribe("ota/+/blk", "ota/g/+/+/blk", f"ota/{late.epn}/job")
    job_id = create_job(on_stack, release.upload_id, [a.epn for a in [*agents, late]], block_size=4096, window=8)
    views = [wait_execution(on_stack, job_id, a.epn, terminal) for a in agents]
    assert [v["state"] for v in views] == ["SUCCEEDED"] * 3, views
    blocks = int(views[0]["blocks_total"])
    on_stack.restart_agent(late)
    view = wait_execution(on_stack, job_id, late.epn, terminal)
    assert view["state"] == "SUCCEEDED", view
    group_topic = topics.group_block_topic(MODEL, job_id)
    docs = [messages.decode(p) for t, p in list(counter.received) if t == f"ota/{late.epn}/job"]
    jobs = [d for d in docs if isinstance(d, messages.JobDocument)]
    assert jobs[0].group is not None and jobs[0].group.topic == group_topic  # offered the group first
    assert jobs[-1].group is None  # then moved to unicast
    to_late = sum(1 for t, _ in list(counter.received) if t == f"ota/{late.epn}/blk")
    broadcast = sum(1 for t, _ in list(counter.received) if t == group_topic)
    print(f"\nlate device: {to_late} unicast frames for {blocks} blocks; group: {broadcast} broadcasts")
    unicast = {wire.decode_frame(p).index for t, p in list(counter.received) if t == f"ota/{late.epn}/blk"}
    assert unicast == set(range(blocks))  # everything by unicast: the broadcast was over when it came


def test_a_device_cannot_read_the_group_topics_of_another_model(on_stack: Session, release: Release,
                                                                mqtt_as) -> None:
    mine, theirs = "grp-a", "grp-b"
    spy_agent = on_stack.start_agent(unique_epn("spy"), mine, release.pub)
    other = on_stack.start_agent(unique_epn("other"), theirs, release.pub)
    wait_registered(on_stack, spy_agent, other)
    wait_roles(on_stack, spy_agent, other)
    on_stack.stop_agents()  # the spy's certificate is used below, without its agent
    cloud = mqtt_as(operator(on_stack.state))
    assert isinstance(cloud, Client), cloud
    spy = mqtt_as(agent_identity(spy_agent))
    assert isinstance(spy, Client), spy
    own, foreign = topics.group_block_topic(mine, "job-x"), topics.group_block_topic(theirs, "job-x")
    frame = wire.encode_frame(7, 0, 1, b"secret")
    deadline = time.monotonic() + WAIT
    while True:  # the control: the spy does get its own model's group frames (ACL reloaded, subscribed)
        spy.subscribe(foreign, f"ota/g/{theirs}/#", own)
        cloud.publish(foreign, frame)
        cloud.publish(own, frame)  # after the foreign one, from the same publisher: arrives after it
        if spy.wait_for(lambda got: any(t == own for t, _ in got), 2.0) or time.monotonic() > deadline:
            break
    assert any(t == own for t, _ in spy.received), "the spy never got its own model's group frame: proves nothing"
    assert [t for t, _ in spy.received if theirs in t] == []
