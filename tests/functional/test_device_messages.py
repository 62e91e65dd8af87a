"""Device-message trigger: status moves, sticky terminal states, inventory, block delivery with acks,
requests, retransmissions, the sweeper, URL refresh, and hostile message bodies."""

from __future__ import annotations

import base64
import json
import random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.device_messages import on_device_message
from chalicelib.triggers.schedules import sweep
from otaformat import messages, wire

from .fakes import device_event, scheduled_event, sqs_record, status
from .flows import publish, register_device, send


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def rollout(api, world, key):
    """A registered dev-1 and a block-mode job of a ~10 KB package in 1 KiB blocks, window 4."""
    upload_id = publish(api, world, key, app="demo", version="1.1.0", size=10000)
    register_device(api, "dev-1")
    job = api.call("POST", "/jobs", {"package_id": upload_id, "targets": {"devices": ["dev-1"]}, "block_size": 1024,
                                     "window": 4, "timeouts": {"stall_seconds": 60, "total_seconds": 3600}}).json
    [doc] = world.publisher.job_documents("dev-1")
    world.publisher.clear()
    return job, doc


def execution(api, job):
    return api.call("GET", f"/jobs/{job['job_id']}/executions/dev-1").json


def test_status_messages_move_the_execution_to_success(api, world, rollout):
    job, doc = rollout
    x = doc.execution_id
    for seq, (state, step) in enumerate([("IN_PROGRESS", "VERIFYING"), ("IN_PROGRESS", "INSTALLING"),
                                         ("SUCCEEDED", None)], start=1):
        send(("dev-1", "status", status(x, state, step, seq)))
    shown = execution(api, job)
    # block mode, no block ever sent: SUCCEEDED is recorded (flagged), progress shows what happened
    assert shown["state"] == "SUCCEEDED" and shown["percent"] == 0.0 and shown["note"]
    assert [t["state"] for t in shown["timeline"]] == ["QUEUED", "IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"]
    summary = api.call("GET", f"/jobs/{job['job_id']}").json
    assert summary["counts"]["SUCCEEDED"] == 1 and summary["percent"] == 0.0 and summary["state"] == "COMPLETED"


@pytest.mark.parametrize("order", [
    [(1, "IN_PROGRESS", "DOWNLOADING"), (3, "SUCCEEDED", None), (2, "IN_PROGRESS", "INSTALLING")],
    [(3, "SUCCEEDED", None), (3, "SUCCEEDED", None), (1, "IN_PROGRESS", "DOWNLOADING")],
    [(2, "IN_PROGRESS", "INSTALLING"), (1, "IN_PROGRESS", "DOWNLOADING"), (3, "FAILED", None),
     (3, "FAILED", None), (4, "SUCCEEDED", None)],
])
def test_duplicated_and_reordered_status_keep_the_right_final_state(api, world, rollout, order):
    job, doc = rollout
    final = next(state for _, state, _ in order if state in ("SUCCEEDED", "FAILED"))
    for seq, state, step in order:  # one message per SQS batch
        send(("dev-1", "status", status(doc.execution_id, state, step, seq, reason="r")))
    shown = execution(api, job)
    assert shown["state"] == final
    assert sum(t["state"] == final for t in shown["timeline"]) == 1


def test_same_batch_reordering_is_handled_too(api, world, rollout):
    job, doc = rollout
    x = doc.execution_id
    send(("dev-1", "status", status(x, "SUCCEEDED", None, 5)),
         ("dev-1", "status", status(x, "IN_PROGRESS", "INSTALLING", 4)),
         ("dev-1", "status", status(x, "SUCCEEDED", None, 5)))
    assert execution(api, job)["state"] == "SUCCEEDED"


def test_late_message_after_cancel_is_ignored(api, world, rollout):
    job, doc = rollout
    api.call("POST", f"/jobs/{job['job_id']}/cancel")
    result = send(("dev-1", "status", status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", 1)))
    assert result["applied"] == 0 and result["ignored"] == 1
    assert execution(api, job)["state"] == "CANCELED"


def test_messages_for_another_devices_execution_are_ignored(api, world, rollout):
    job, doc = rollout
    register_device(api, "dev-2")
    send(("dev-2", "status", status(doc.execution_id, "FAILED", None, 1)))
    assert execution(api, job)["state"] == "QUEUED"


def test_inventory_updates_device_and_republishes_pending_jobs(api, world, rollout):
    _, doc = rollout
    inventory = messages.encode(messages.Inventory("1.2.0", "model-a", {"demo": "1.0.0", "tool": "3.0.0"}))
    send(("dev-1", "status", inventory))
    device = api.call("GET", "/devices/dev-1").json
    assert device["agent_version"] == "1.2.0" and device["apps"] == {"demo": "1.0.0", "tool": "3.0.0"}
    [again] = world.publisher.job_documents("dev-1")
    assert again.execution_id == doc.execution_id and again.stream == doc.stream


class Agent:
    """Just enough of a device to pull a block-mode package: asks, acks, keeps what it got."""

    def __init__(self, world, doc, epn="dev-1"):
        self.world, self.doc, self.epn = world, doc, epn
        self.have: dict[int, bytes] = {}
        self.seen = 0

    def new_frames(self):
        frames = self.world.publisher.frames(self.epn)
        fresh, self.seen = frames[self.seen:], len(frames)
        return fresh

    def request_all(self):
        missing = [i for i in range(self.doc.block_count) if i not in self.have]
        request = wire.make_request(self.doc.execution_id, self.doc.stream, missing)
        return send((self.epn, "get", wire.encode_request(request)), received_ms=self.at())

    def at(self):
        return int(self.world.clock.now * 1000)

    def status(self, state, step=None, seq=1, reason=None):
        return send((self.epn, "status", status(self.doc.execution_id, state, step, seq, reason)),
                    received_ms=self.at())

    def ack(self, indices, *, copies=1):
        payload = wire.encode_ack(wire.make_ack(self.doc.execution_id, self.doc.stream, indices, self.doc.block_count))
        return send(*[(self.epn, "ack", payload)] * copies, received_ms=self.at())

    def take(self, frames):
        for frame in frames:
            assert frame.stream == self.doc.stream and frame.total == self.doc.block_count
            self.have.setdefault(frame.index, frame.data)

    def package(self):
        return b"".join(self.have[i] for i in range(self.doc.block_count))


def repository_object(world, api, job):
    package = api.call("GET", f"/packages/{job['package_id']}").json
    s3 = world.session.client("s3")
    return s3.get_object(Bucket=world.settings.repository_bucket, Key=package["repository_key"])["Body"].read()


def test_block_transfer_window_acks_and_reassembly(api, world, rollout):
    job, doc = rollout
    agent = Agent(world, doc)
    agent.request_all()
    first = agent.new_frames()
    assert [f.index for f in first] == [0, 1, 2, 3]  # one window
    rounds = 0
    frames = first
    while len(agent.have) < doc.block_count:
        agent.take(frames)
        agent.ack(set(agent.have), copies=2)  # every ack duplicated
        frames = agent.new_frames()
        rounds += 1
        assert rounds < 50
    assert agent.package() == repository_object(world, api, job)
    assert sum(len(f.data) for f in world.publisher.frames("dev-1")) == doc.package_size
    shown = execution(api, job)
    assert shown["blocks_acked"] == doc.block_count and shown["retransmissions"] == 0
    assert shown["percent"] == 100.0


def test_reordered_and_partial_acks_never_double_count(api, world, rollout):
    job, doc = rollout
    agent = Agent(world, doc)
    agent.request_all()
    agent.take(agent.new_frames())
    acks = [wire.encode_ack(wire.make_ack(doc.execution_id, doc.stream, s, doc.block_count))
            for s in ({1}, {0, 1, 3}, {3})]
    send(*[("dev-1", "ack", a) for a in reversed(acks)], *[("dev-1", "ack", a) for a in acks])
    shown = execution(api, job)
    assert shown["blocks_acked"] == 3
    # blocks 0, 1, 3 acked: three new blocks (4, 5, 6) go out; 3 (sent after 2) arrived, so 2 was lost:
    # resent at once (fast repair)
    assert sorted(f.index for f in agent.new_frames()) == [2, 4, 5, 6]


def test_get_resends_requested_blocks_and_counts_retransmissions(api, world, rollout):
    job, doc = rollout
    agent = Agent(world, doc)
    agent.request_all()
    agent.new_frames()  # lost on the way
    world.clock.advance(0.2)
    agent.request_all()  # asked again within the request guard (0.5 s): on their way, not resent
    assert agent.new_frames() == []
    world.clock.advance(0.8)
    agent.request_all()  # the device's first repair (1 s after the send): resent
    assert sorted(f.index for f in agent.new_frames()) == [0, 1, 2, 3]
    assert execution(api, job)["retransmissions"] == 4


def test_first_window_goes_out_once_when_status_and_first_get_land_in_separate_batches(api, world, rollout):
    """The agent publishes DOWNLOADING, then `get` for every block; when SQS hands them to two handler
    calls, the status already sent the first window and the get must not send it again."""
    job, doc = rollout
    agent = Agent(world, doc)
    agent.status("IN_PROGRESS", "DOWNLOADING")
    assert sorted(f.index for f in agent.new_frames()) == [0, 1, 2, 3]
    world.clock.advance(0.2)
    agent.request_all()
    assert agent.new_frames() == []
    shown = execution(api, job)
    assert shown["blocks_sent"] == 4 and shown["retransmissions"] == 0
    assert len(world.publisher.on("dev-1", "blk")) == 4


def test_sweeper_resends_overdue_blocks_then_times_out(api, world, rollout):
    job, doc = rollout
    agent = Agent(world, doc)
    agent.request_all()
    agent.new_frames()
    world.clock.advance(1)
    assert sweep(scheduled_event(), None)["resent_blocks"] == 0  # not overdue yet
    world.clock.advance(10)
    assert sweep(scheduled_event(), None)["resent_blocks"] == 4
    assert sorted(f.index for f in agent.new_frames()) == [0, 1, 2, 3]
    world.clock.advance(120)  # silent past the 60 s stall timeout
    assert sweep(scheduled_event(), None)["timed_out"] == 1
    shown = execution(api, job)
    assert shown["state"] == "TIMED_OUT" and "stall" in shown["timeline"][-1]["reason"]
    assert world.publisher.cancels("dev-1") == [doc.execution_id]
    assert api.call("GET", f"/jobs/{job['job_id']}").json["state"] == "COMPLETED"


def test_queued_execution_times_out_after_total_timeout(api, world, rollout):
    job, _ = rollout
    world.clock.advance(3601)
    assert sweep(scheduled_event(), None)["timed_out"] == 1
    assert execution(api, job)["state"] == "TIMED_OUT"


def test_url_refresh_republishes_a_fresh_url(api, world, key):
    upload_id = publish(api, world, key, app="demo", version="1.1.0")
    register_device(api, "dev-1")
    api.call("POST", "/jobs", {"package_id": upload_id, "targets": {"devices": ["dev-1"]}, "mode": "url"})
    [doc] = world.publisher.job_documents("dev-1")
    send(("dev-1", "get", messages.encode(messages.UrlRefresh(doc.execution_id))))
    docs = world.publisher.job_documents("dev-1")
    assert len(docs) == 2 and docs[1].url and docs[1].execution_id == doc.execution_id


@pytest.mark.parametrize("body", [
    "not json", json.dumps({"topic": "ota/dev-1/status"}),
    json.dumps({"topic": "ota/dev-1/status", "payload_b64": "***"}),
    json.dumps({"topic": "ota/+/status", "payload_b64": ""}),
    json.dumps({"topic": "elsewhere", "payload_b64": ""}),
    json.dumps({"topic": "ota/dev-1/job", "payload_b64": ""}),
    json.dumps({"topic": "ota/dev-1/status", "payload_b64": base64.b64encode(b"\xff\x00garbage").decode()}),
    json.dumps({"topic": "ota/dev-1/ack", "payload_b64": base64.b64encode(b'{"x": 1}').decode()}),
    json.dumps({"topic": "ota/dev-1/get", "payload_b64": base64.b64encode(b'[1, 2]').decode()}),
    json.dumps({"topic": "ota/dev-1/status", "payload_b64": base64.b64encode(b'{"v":1,"type":"status","x":"e",'
                                                                                 b'"state":"DONE","seq":1}').decode()}),
    json.dumps({"topic": "ota/dev-1/status", "payload_b64": "", "received_at": "yesterday"}),
])
def test_hostile_bodies_are_dropped_without_raising(api, world, rollout, body):
    job, _ = rollout
    on_device_message({"Records": [sqs_record(body)]}, None)
    assert execution(api, job)["state"] == "QUEUED"


def test_random_garbage_never_raises(world, rollout):
    rng = random.Random(7)
    for _ in range(200):
        leaf = rng.choice(["ack", "get", "status", "cmd/result"])
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        send(("dev-1", leaf, payload))


def test_stale_container_cache_never_overrides_a_newer_state(api, world, rollout):
    """The handler remembers executions it saved; a cancel made elsewhere must still win."""
    job, doc = rollout
    send(("dev-1", "status", status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", 1)))
    assert len(world.publisher.frames("dev-1")) == 4  # DOWNLOADING started the window
    api.call("POST", f"/jobs/{job['job_id']}/cancel")
    agent = Agent(world, doc)
    agent.request_all()
    send(("dev-1", "status", status(doc.execution_id, "SUCCEEDED", None, 2)))
    assert execution(api, job)["state"] == "CANCELED"
    assert len(world.publisher.frames("dev-1")) == 4


class BrokenRepository:
    """Every read fails, as DynamoDB does during an outage."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise RuntimeError("table unavailable")
        return fail


def test_infrastructure_failure_reports_the_records_so_sqs_retries_then_dead_letters(world, rollout):
    _, doc = rollout
    world.container.repository = BrokenRepository()
    event = device_event([("dev-1", "status", status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", 1)),
                          ("dev-1", "ack", wire.encode_ack(wire.make_ack(doc.execution_id, doc.stream, {0}, 10)))])
    result = on_device_message(event, None)
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        r["messageId"] for r in event["Records"])
