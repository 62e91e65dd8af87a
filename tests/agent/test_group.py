"""Group delivery on the agent (docs/protocol.md section 15): follow the job's group topic, accept its
frames with the group stream only, say `g`, leave the group when the download ends, when the cloud moves
the execution to unicast, or after a crash; and the same over a real mosquitto."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.mqtt_transport import MqttTransport
from agent.runtime import Agent
from agent.transport import Message
from otaformat import messages, topics, wire

from .pkgtools import build_package, frames, job_for

GROUP_STREAM = 0xCAFE
TOPIC = topics.group_block_topic("m1", "job-1")


def group_job(package, envelope, **kw):
    job = job_for(package, envelope, block_size=512, **kw)
    return dataclasses.replace(job, group=messages.Group(TOPIC, GROUP_STREAM))


def group_frames(job, package):
    return [wire.encode_frame(GROUP_STREAM, f.index, f.total, f.data)
            for f in (wire.decode_frame(x) for x in frames(job, package))]


@pytest.fixture
def package(publisher):
    key, _ = publisher
    return build_package(key, files={"bin/app": random.Random(7).randbytes(12000)})


def test_a_group_job_is_taken_from_group_frames_and_the_group_is_left_after(harness, package):
    data, envelope = package
    job = group_job(data, envelope)
    harness.job(job)
    assert harness.transport.following == {TOPIC}
    downloading = harness.transport.statuses()[0]
    assert downloading.step == "DOWNLOADING" and downloading.group == GROUP_STREAM
    assert wire.decode_request(harness.transport.leaf("get")[0]).group == GROUP_STREAM
    for frame in group_frames(job, data):
        harness.agent.handle(Message("group", frame, TOPIC))
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]
    assert all(wire.decode_ack(a).group == GROUP_STREAM for a in harness.transport.leaf("ack"))
    assert harness.transport.following == set() and harness.transport.left == [TOPIC]
    assert harness.agent.store.data["group"] is None


@pytest.mark.parametrize("case", ["execution-stream-on-group-topic", "group-stream-on-own-topic", "other-topic"])
def test_frames_are_accepted_only_with_the_stream_of_their_topic(harness, package, case):
    data, envelope = package
    job = group_job(data, envelope)
    harness.job(job)
    if case == "execution-stream-on-group-topic":
        items = [Message("group", f, TOPIC) for f in frames(job, data)]
    elif case == "group-stream-on-own-topic":
        items = [Message("blk", f) for f in group_frames(job, data)]
    else:
        other = topics.group_block_topic("m1", "job-2")
        items = [Message("group", f, other) for f in group_frames(job, data)]
    for item in items:
        harness.agent.handle(item)
    assert harness.agent.spool is not None and harness.agent.spool.count == 0
    assert sum(harness.agent.dropped.values()) == len(items)
    for frame in frames(job, data):  # unicast repairs with the execution's stream still work
        harness.send("blk", frame)
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]


def test_the_job_document_again_without_group_moves_the_download_to_unicast(harness, package):
    data, envelope = package
    job = group_job(data, envelope)
    harness.job(job)
    fs, gs = frames(job, data), group_frames(job, data)
    for frame in gs[:3]:
        harness.agent.handle(Message("group", frame, TOPIC))
    harness.job(dataclasses.replace(job, group=None))
    assert harness.transport.following == set() and harness.transport.left == [TOPIC]
    harness.agent.handle(Message("group", gs[3], TOPIC))  # a late group frame: no longer followed
    assert harness.agent.spool.count == 3
    harness.idle(1.5)
    assert wire.decode_request(harness.transport.leaf("get")[-1]).group is None
    for frame in fs[3:]:
        harness.send("blk", frame)
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]


def test_a_group_of_another_model_is_refused_before_anything_is_followed(harness, package):
    data, envelope = package
    job = dataclasses.replace(group_job(data, envelope),
                              group=messages.Group(topics.group_block_topic("m2", "job-1"), GROUP_STREAM))
    harness.job(job)
    assert harness.transport.following == set()
    [refused] = harness.transport.terminal()
    assert refused.state == "REJECTED" and "group topic" in (refused.reason or "")


def test_a_restart_mid_download_follows_again_and_one_after_it_leaves(harness, package):
    data, envelope = package
    job = group_job(data, envelope)
    harness.job(job)
    gs = group_frames(job, data)
    for frame in gs[:4]:
        harness.agent.handle(Message("group", frame, TOPIC))
    harness.agent.spool.flush()
    harness.transport.following.clear()  # a new process: a new transport subscription state
    harness.restart()
    assert harness.transport.following == {TOPIC}
    for frame in gs[4:]:
        harness.agent.handle(Message("group", frame, TOPIC))
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]
    # a crash after the download but before the unsubscribe: the next start leaves the group
    harness.agent.store.data["group"] = TOPIC
    harness.agent.store.save()
    harness.transport.left.clear()
    harness.restart()
    assert harness.transport.left == [TOPIC] and harness.agent.store.data["group"] is None


# -- over a real mosquitto: the MQTT transport subscribes, receives and unsubscribes ----------------------


def wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    done = threading.Event()
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not condition():
            if deadline.is_set():
                raise AssertionError("condition not reached in time")
            done.wait(0.02)
    finally:
        timer.cancel()


def test_the_mqtt_transport_follows_and_leaves_a_group_topic(broker, config, package, tmp_path):
    data, envelope = package
    job = group_job(data, envelope)
    transport = MqttTransport(config.epn, "127.0.0.1", broker.port)
    agent = Agent(config, transport)
    runner = threading.Thread(target=agent.run, daemon=True)
    cloud = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cloud-test")
    seen: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    cloud.on_message = lambda _c, _u, msg: seen.append((msg.topic, bytes(msg.payload)))
    cloud.on_subscribe = lambda *_args: subscribed.set()
    cloud.connect("127.0.0.1", broker.port)
    cloud.loop_start()
    try:
        cloud.subscribe([("ota/dev-1/get", 1), ("ota/dev-1/status", 1)])
        wait(subscribed.is_set)  # the cloud hears the agent from its first message on
        runner.start()
        # its inventory follows its SUBSCRIBE on the same connection: once heard, the job topic is live
        wait(lambda: any(t == "ota/dev-1/status" for t, _ in seen))
        cloud.publish(topics.topic("dev-1", "job"), messages.encode(job), qos=1)
        wait(lambda: any(t == "ota/dev-1/get" for t, _ in seen))  # subscribed before it asked
        for frame in group_frames(job, data):
            cloud.publish(TOPIC, frame, qos=1)
        wait(lambda: any(isinstance(s, messages.Status) and s.state == "SUCCEEDED"
                         for s in (messages.decode(p) for t, p in seen if t == "ota/dev-1/status")))
        assert agent.blocks_received == job.block_count
        wait(lambda: TOPIC not in transport._groups)
        # left: a frame published on the group topic now reaches nobody
        before = agent.blocks_received
        cloud.publish(TOPIC, group_frames(job, data)[0], qos=1).wait_for_publish(5)
        cloud.publish(topics.topic("dev-1", "blk"), frames(job, data)[0], qos=1).wait_for_publish(5)
        wait(lambda: agent.dropped.get("not-downloading", 0) >= 1)
        assert agent.blocks_received == before and "group-not-followed" not in agent.dropped
    finally:
        agent.stop_event.set()
        runner.join(10)
        cloud.loop_stop()
        cloud.disconnect()
