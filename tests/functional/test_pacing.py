"""Paced block delivery without sleeping (issue 12), through the real triggers on moto: a paced execution
sends only its budget per second, continues by wakes scheduled with a delay, never sleeps, and the
composition root wires it only when a rate is configured (the AWS stage sets IoT Core's values)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from moto import mock_aws

from chalicelib import bootstrap
from chalicelib.adapters.wake import ManualWakeQueue, SqsWakeQueue
from chalicelib.domain.pacing import Pace
from chalicelib.services.pacing import Pacing, wake_body
from chalicelib.settings import Settings
from chalicelib.triggers.device_messages import on_device_message, parse_records
from chalicelib.triggers.schedules import sweep
from otaformat import messages, wire

from .fakes import RecordingPublisher, scheduled_event, sqs_record, status
from .flows import publish, register_device, send

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 1024
FRAME = BLOCK + wire.FRAME_HEADER.size
PER_SECOND = 5  # frames per second the byte limit allows


@pytest.fixture
def no_sleep():
    """Fails the test if anything in this thread calls time.sleep (the handlers run in the test's thread)."""
    slept: list[object] = []

    def watch(frame, event, arg):
        if event == "c_call" and arg is time.sleep:
            slept.append(frame.f_code.co_filename)

    sys.setprofile(watch)
    yield slept
    sys.setprofile(None)
    assert not slept, f"a handler slept: {slept}"


class TimedPublisher(RecordingPublisher):
    """Records when (by the test's clock) each publish happened."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.at: list[tuple[float, str, int]] = []

    def publish(self, topic, payload):
        super().publish(topic, payload)
        self.at.append((self.clock(), topic, len(payload)))


@pytest.fixture
def paced(world):
    """The world with a paced container: PER_SECOND frames of 1 KiB per second, wakes held by hand."""
    queue = ManualWakeQueue(world.clock)
    world.container.pacing = Pacing(Pace(messages=100, bytes=PER_SECOND * FRAME), queue, world.clock)
    world.container.publisher = TimedPublisher(world.clock)
    return world.container.publisher, queue


def start(api, world, key, window=16, size=30000, epn="dev-1"):
    upload_id = publish(api, world, key, app="demo", version="1.1.0", size=size)
    register_device(api, epn)
    job = api.call("POST", "/jobs", {"package_id": upload_id, "targets": {"devices": [epn]}, "block_size": BLOCK,
                                     "window": window}).json
    assert job["state"] == "ACTIVE", job
    [doc] = world.container.publisher.job_documents(epn)
    return doc


def frames_in_windows(publisher, prefix="ota/dev-1/blk"):
    """The most frames and bytes sent in any one-second interval starting at a send."""
    sends = [(at, size) for at, topic, size in publisher.at if topic.startswith(prefix)]
    worst = (0, 0)
    for at, _ in sends:
        inside = [size for t, size in sends if at <= t < at + 1.0]
        worst = max(worst, (len(inside), sum(inside)))
    return worst


def deliver_due(world, queue):
    """Advance the clock to the next due wake and hand every due wake to the trigger (as SQS would)."""
    due = queue.next_due()
    assert due is not None
    world.clock.now = max(world.clock.now, due)
    bodies = queue.due(world.clock.now)
    return on_device_message({"Records": [sqs_record(json.dumps(b)) for b in bodies]}, None)


def test_a_paced_transfer_sends_its_budget_per_second_and_continues_by_delayed_wakes(api, world, paced, no_sleep):
    publisher, queue = paced
    key = ec.generate_private_key(ec.SECP256R1())
    doc = start(api, world, key)
    assert doc.pace_ms == 1000  # the agent stretches its ack idle timer on paced jobs
    send(("dev-1", "status", status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", seq=1)))
    assert len(publisher.frames("dev-1")) == PER_SECOND  # the window allows 16: the budget 5
    assert [delay for _, delay, _ in queue.sent] == [1]
    rounds = 0
    while len({f.index for f in publisher.frames("dev-1")}) < doc.block_count:
        held = sorted({f.index for f in publisher.frames("dev-1")})
        send(("dev-1", "ack", wire.encode_ack(wire.make_ack(doc.execution_id, doc.stream, held, doc.block_count))),
             received_ms=int(world.clock.now * 1000))
        deliver_due(world, queue)
        rounds += 1
        assert rounds <= doc.block_count
    count, size = frames_in_windows(publisher)
    assert count <= PER_SECOND and size <= PER_SECOND * FRAME
    assert all(1 <= delay <= 900 and isinstance(delay, int) for _, delay, _ in queue.sent)
    assert rounds == -(-doc.block_count // PER_SECOND) - 1  # one burst per second, nothing wasted


def test_a_duplicated_wake_sends_nothing_more_and_schedules_nothing_more(api, world, paced, no_sleep):
    publisher, queue = paced
    doc = start(api, world, ec.generate_private_key(ec.SECP256R1()))
    send(("dev-1", "status", status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", seq=1)))
    [(_, _, body)] = queue.sent
    world.clock.now = queue.next_due()
    queue.due(world.clock.now)
    for _ in range(3):  # SQS delivers at least once
        on_device_message({"Records": [sqs_record(json.dumps(body))]}, None)
    assert len(publisher.frames("dev-1")) == 2 * PER_SECOND
    assert len(queue.sent) == 2  # the first wake scheduled the next one; its duplicates found it pending


@pytest.mark.parametrize("body", [
    wake_body("ex-unknown", "dev-1", 0.0),  # an execution that does not exist
    {"wake": {"x": "ex-1", "epn": "../etc"}},  # malformed: dropped, never retried
    {"wake": "ex-1"},
])
def test_stray_or_malformed_wakes_change_nothing(api, world, paced, body):
    publisher, queue = paced
    answer = on_device_message({"Records": [sqs_record(json.dumps(body))]}, None)
    assert answer["batchItemFailures"] == [] and answer["blocks_sent"] == 0
    assert not publisher.sent and not queue.sent


def test_the_sweepers_resend_stays_within_the_budget(api, world, paced, no_sleep):
    publisher, _ = paced
    doc = start(api, world, ec.generate_private_key(ec.SECP256R1()), window=5)
    send(("dev-1", "status", status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", seq=1)))
    world.clock.advance(0.5)
    sweep(scheduled_event(), None)  # not overdue yet
    world.clock.advance(10)  # no acks: the sweeper resends the window, within a fresh second's budget
    sweep(scheduled_event(), None)
    count, _ = frames_in_windows(publisher)
    assert len(publisher.frames("dev-1")) == 2 * PER_SECOND and count <= PER_SECOND


def test_wakes_go_to_the_device_queue_with_a_delay(world):
    sqs = world.session.client("sqs")
    url = sqs.get_queue_url(QueueName=world.settings.device_queue)["QueueUrl"]
    SqsWakeQueue(sqs, world.settings.device_queue).wake(wake_body("ex-1", "dev-1", 12.5), 2)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)  # not before its delay
    [message], malformed = parse_records([sqs_record(json.dumps(wake_body("ex-1", "dev-1", 12.5)))], 0)
    assert (message.epn, message.leaf, malformed) == ("dev-1", "wake", 0)


@pytest.mark.parametrize(("extra", "paced"), [
    ({}, False),
    ({"OTA_DEVICE_PUBLISH_RATE": "85"}, True),
    ({"OTA_DEVICE_BYTE_RATE": "524288"}, True),
    ({"OTA_DEVICE_PUBLISH_RATE": "0", "OTA_DEVICE_BYTE_RATE": "0"}, False),
])
def test_composition_root_paces_only_when_configured(env, extra, paced):
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        container = bootstrap.build(Settings.from_env({**env, **extra}), session)
        assert (container.pacing is not None) is paced
        assert type(container.publisher).__name__ == "IotDataPublisher"  # nothing wraps it: no sleeping


@pytest.mark.parametrize("value", ["-1", "fast", "1e3"])
def test_bad_rates_are_named(env, value):
    with pytest.raises(ValueError, match="OTA_DEVICE_PUBLISH_RATE"):
        Settings.from_env({**env, "OTA_DEVICE_PUBLISH_RATE": value})


def test_aws_stage_respects_iot_core_limits():
    variables = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]["environment_variables"]
    settings = Settings.from_env(variables)
    assert 0 < settings.device_publish_rate < 100  # the device's acks share the 100/s
    assert 0 < settings.device_byte_rate <= 512 * 1024


def test_a_group_broadcast_is_paced_by_the_groups_own_budget(api, world, paced, no_sleep):
    publisher, queue = paced
    key = ec.generate_private_key(ec.SECP256R1())
    upload_id = publish(api, world, key, app="demo", version="1.1.0", size=30000)
    for epn in ("dev-1", "dev-2"):
        register_device(api, epn)
    api.call("POST", "/jobs", {"package_id": upload_id, "targets": {"model": "model-a"}, "block_size": BLOCK,
                               "window": 16})
    docs = {epn: publisher.job_documents(epn)[-1] for epn in ("dev-1", "dev-2")}
    assert all(d.group is not None and d.pace_ms == 1000 for d in docs.values())
    for seq, (epn, doc) in enumerate(docs.items(), 1):
        joined = messages.Status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", None, seq, None, doc.group.stream)
        send((epn, "status", messages.encode(joined)))
    topic = docs["dev-1"].group.topic
    assert len([t for _, t, _ in publisher.at if t == topic]) == PER_SECOND
    for _ in range(2):
        held = sorted({wire.decode_frame(p).index for t, p in publisher.sent if t == topic})
        for epn, doc in docs.items():  # members ack what the broadcast brought (the group advances on acks)
            ack = wire.make_ack(doc.execution_id, doc.stream, held, doc.block_count, group=doc.group.stream)
            send((epn, "ack", wire.encode_ack(ack)), received_ms=int(world.clock.now * 1000))
        deliver_due(world, queue)
    assert len([t for _, t, _ in publisher.at if t == topic]) == 3 * PER_SECOND
    count, size = frames_in_windows(publisher, topic)
    assert count <= PER_SECOND and size <= PER_SECOND * FRAME


def test_a_request_the_budget_holds_back_is_served_by_the_wakes(api, world, paced, no_sleep):
    publisher, queue = paced
    doc = start(api, world, ec.generate_private_key(ec.SECP256R1()), window=12)
    send(("dev-1", "status", status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", seq=1)))
    deliver_due(world, queue)
    deliver_due(world, queue)  # 12 blocks sent (the window), none arrived: the device asks for all of them
    assert sorted({f.index for f in publisher.frames("dev-1")}) == list(range(12))
    world.clock.advance(2)
    request = wire.make_request(doc.execution_id, doc.stream, range(doc.block_count))
    send(("dev-1", "get", wire.encode_request(request)), received_ms=int(world.clock.now * 1000))
    resent = publisher.frames("dev-1")[12:]
    assert [f.index for f in resent] == list(range(PER_SECOND))  # the budget's worth at once
    for _ in range(2):
        deliver_due(world, queue)  # the rest by the next bursts, without another request
    assert [f.index for f in publisher.frames("dev-1")[12:]] == list(range(12))
    count, _ = frames_in_windows(publisher)
    assert count <= PER_SECOND
