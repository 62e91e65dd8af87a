"""Asynchronous job fan-out (issue 13): POST /jobs answers before any execution exists; the fan-out
queue's work items (SQS on moto, consumed by the real trigger) create one execution per target, once,
QUEUED with its job document or SKIPPED with the reason; continuous jobs reach devices registered later."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.adapters.fanout import InlineFanoutQueue
from chalicelib.adapters.memory import MemoryRepository, MemoryStorage
from chalicelib.domain.models import Device, Job, Package
from chalicelib.services import fanout
from chalicelib.triggers.fanout import process

from .fakes import RecordingPublisher
from .flows import publish, register_device


@pytest.fixture
def env(env):
    return {**env, "OTA_FANOUT_QUEUE": "ota-fanout"}


@pytest.fixture
def package(api, world):
    return publish(api, world, ec.generate_private_key(ec.SECP256R1()), app="demo", version="1.1.0", size=3000)


def pump(world) -> list[dict]:
    """Deliver every fan-out message to the trigger, as Lambda's event source mapping does; returns them."""
    sqs = world.session.client("sqs")
    url = sqs.get_queue_url(QueueName="ota-fanout")["QueueUrl"]
    seen = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return seen
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"} for m in got]
        assert process(records)["batchItemFailures"] == []
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)])
        seen.extend(json.loads(m["Body"]) for m in got)


@pytest.mark.parametrize("targets", [{"model": "model-a"}, {"devices": ["dev-0", "dev-1", "dev-2", "dev-3"]}])
def test_post_returns_before_the_fanout_which_creates_each_execution_once(api, world, package, targets):
    register_device(api, "dev-0")
    register_device(api, "dev-1")
    register_device(api, "dev-2", apps={"demo": "2.0.0"})  # ahead: SKIPPED, not a 409
    register_device(api, "dev-3", model="model-b") if "devices" in targets else None
    made = api.call("POST", "/jobs", {"package_id": package, "targets": targets, "block_size": 1024})
    assert made.status_code == 201, made.json
    job_id = made.json["job_id"]
    assert made.json["targets_resolved"] == 0 and made.json["executions_created"] == 0
    assert api.call("GET", f"/jobs/{job_id}/executions").json["executions"] == []
    assert world.publisher.job_documents("dev-0") == []
    items = pump(world)
    assert items and all(i["job_id"] == job_id for i in items)
    job = api.call("GET", f"/jobs/{job_id}").json
    skipped = 2 if "devices" in targets else 1
    assert job["targets_resolved"] == 2 + skipped and job["executions_created"] == 2 and job["fanout_done"]
    assert job["counts"]["QUEUED"] == 2 and job["counts"]["SKIPPED"] == skipped and job["state"] == "ACTIVE"
    assert len(world.publisher.job_documents("dev-0")) == 1 and world.publisher.job_documents("dev-2") == []
    why = api.call("GET", f"/jobs/{job_id}/executions/dev-2").json
    assert why["state"] == "SKIPPED" and "no downgrades" in why["timeline"][0]["reason"]
    sqs = world.session.client("sqs")  # a redelivered batch: nothing twice
    url = sqs.get_queue_url(QueueName="ota-fanout")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": json.dumps(i)}
                                                  for n, i in enumerate(items)])
    pump(world)
    again = api.call("GET", f"/jobs/{job_id}").json
    assert again["targets_resolved"] == job["targets_resolved"] and again["counts"] == job["counts"]
    listed = api.call("GET", f"/jobs/{job_id}/executions?limit=2").json
    assert len(listed["executions"]) == 2 and listed["next_cursor"]


def test_all_or_nothing_on_a_model_refuses_and_stores_nothing(api, world, package):
    register_device(api, "dev-0")
    register_device(api, "dev-1", apps={"demo": "2.0.0"})
    refused = api.call("POST", "/jobs", {"package_id": package, "targets": {"model": "model-a"},
                                         "all_or_nothing": True})
    assert refused.status_code == 409 and "dev-1" in refused.json["message"]
    assert api.call("GET", "/jobs").json["jobs"] == [] and pump(world) == []


def test_continuous_job_reaches_devices_registered_later(api, world, package):
    made = api.call("POST", "/jobs", {"package_id": package, "targets": {"model": "model-a", "continuous": True}})
    assert made.status_code == 201, made.json  # no device yet: fine for a continuous job
    pump(world)
    register_device(api, "late-1")
    register_device(api, "late-2", model="model-b")
    job = api.call("GET", f"/jobs/{made.json['job_id']}").json
    assert job["executions_created"] == 1 and job["continuous"] and job["state"] == "ACTIVE"
    assert api.call("GET", f"/jobs/{made.json['job_id']}/executions/late-1").json["state"] == "QUEUED"
    assert len(world.publisher.job_documents("late-1")) == 1 and world.publisher.job_documents("late-2") == []
    plain = api.call("POST", "/jobs", {"package_id": package, "targets": {"devices": ["late-1"], "continuous": True}})
    assert plain.status_code == 400 and plain.json["field"] == "targets"


def test_explicit_list_bounds(api, world, package):
    too_many = [f"d-{n}" for n in range(10_001)]
    answer = api.call("POST", "/jobs", {"package_id": package, "targets": {"devices": too_many}})
    assert answer.status_code == 400 and answer.json["field"] == "targets.devices"


def test_model_pages_chain_through_the_queue_and_the_job_item_stays_small():
    repo, storage, publisher = MemoryRepository(), MemoryStorage(), RecordingPublisher()
    for n in range(23):
        repo.create_device(Device(epn=f"dev-{n:02d}", model="m", state="REGISTERED", token_sha256="0" * 64,
                                  token_expires=0.0, created_at=0.0))
    repo.create_package(Package(upload_id="up-1", state="AVAILABLE", declared_size=10, created_at=0.0, app="demo",
                                version_label="1.1.0", models=("m",), size=10, sha256="a" * 64,
                                repository_key="packages/x", envelope={}))
    job = Job(job_id="job-1", upload_id="up-1", mode="block", block_size=1024, window=4, stall_seconds=60,
              total_seconds=600, targets=(), target_spec={"model": "m"}, state="ACTIVE", created_at=0.0, app="demo",
              app_version="1.1.0", package_size=10, package_sha256="a" * 64, repository_key="packages/x",
              block_count=1)
    repo.create_job(job, ())
    handled = []
    queue = InlineFanoutQueue(lambda m, q: handled.append(fanout.handle(repo, storage, publisher, q, 1.0, m, batch=5)))
    fanout.start(repo, queue, job, None)
    assert handled == [5, 5, 5, 5, 3] and queue.sent == 5  # bounded batches, one message per page
    assert fanout.progress(repo, job)["fanout_done"] and repo.job_counts("job-1")["QUEUED"] == 23
    assert len({e.epn for e in repo.list_job_executions("job-1")}) == 23
