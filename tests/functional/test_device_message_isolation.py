"""One device can never harm another on the device-message queue.

- A hostile payload (JSON nested thousands deep on a device's own topic, or in the SQS body) is dropped
  as malformed without raising, and the good records of the same batch are applied.
- An infrastructure failure while applying one execution's group reports exactly that group's records
  in batchItemFailures (partial batch response); every other group of the batch is applied.
- Every message is authorised by the EPN of its own topic: another device's message for an execution
  is dropped whatever its place in the batch, and the owner's messages are applied.
- The local bridge's pump, fed by the real handler, deletes exactly what the response says was consumed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.domain.retries import split_wire_id
from chalicelib.triggers.device_messages import on_device_message
from local.forwarder import rule_body
from local.sqspump import SqsPump
from otaformat import messages, wire

from .fakes import NOW, device_event, sqs_record, status
from .flows import publish, register_device

DEEP = b"[" * 5000 + b"]" * 5000  # 10 KB: deep enough to make a recursive parser raise RecursionError


@pytest.fixture
def two_devices(api, world):
    """dev-1 and dev-2, each with an execution of one block-mode job (1 KiB blocks, window 4)."""
    key = ec.generate_private_key(ec.SECP256R1())
    upload_id = publish(api, world, key, app="demo", version="1.1.0", size=10000)
    register_device(api, "dev-1")
    register_device(api, "dev-2")
    job = api.call("POST", "/jobs", {"package_id": upload_id, "targets": {"devices": ["dev-1", "dev-2"]},
                                     "block_size": 1024, "window": 4}).json
    [doc1] = world.publisher.job_documents("dev-1")
    [doc2] = world.publisher.job_documents("dev-2")
    world.publisher.clear()
    return job, {"dev-1": doc1, "dev-2": doc2}


def state(api, job, epn):
    return api.call("GET", f"/jobs/{job['job_id']}/executions/{epn}").json["state"]


def downloading(doc, seq=1):
    return status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", seq)


def failures(result: dict[str, Any]) -> list[str]:
    return sorted(f["itemIdentifier"] for f in result["batchItemFailures"])


def ids(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["messageId"] for r in records)


class FailingSaves:
    """The real repository, except that saving one execution fails (a throttled or unavailable partition)."""

    def __init__(self, inner: Any, execution_id: str) -> None:
        self.inner, self.execution_id = inner, execution_id

    def save_execution(self, execution: Any) -> None:
        if execution.execution_id == self.execution_id:
            raise RuntimeError("ProvisionedThroughputExceededException")
        self.inner.save_execution(execution)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# -- (a) hostile payloads are dropped as malformed, the neighbours applied ---------------------------


def _body(topic: str, payload: bytes) -> str:
    return rule_body(topic, payload, int(NOW * 1000))


@pytest.mark.parametrize("hostile", [
    pytest.param(_body("ota/dev-2/get", DEEP), id="get-deep-array"),
    pytest.param(_body("ota/dev-2/get", b'{"type": "url", "x": ' + DEEP + b"}"), id="get-url-deep-field"),
    pytest.param(_body("ota/dev-2/status", DEEP), id="status-deep-array"),
    pytest.param(_body("ota/dev-2/status", b'{"v": 1, "type": "inventory", "apps": ' + DEEP + b"}"),
                 id="inventory-deep-apps"),
    pytest.param(_body("ota/dev-2/ack", DEEP), id="ack-deep-array"),
    pytest.param(_body("ota/dev-2/cmd/result", DEEP), id="cmd-result-deep-array"),
    pytest.param(DEEP.decode(), id="sqs-body-deep-array"),
    pytest.param('{"topic": "ota/dev-2/status", "payload_b64": "", "extra": ' + DEEP.decode() + "}",
                 id="sqs-body-deep-field"),
])
def test_deeply_nested_json_is_dropped_and_the_neighbour_is_applied(api, world, two_devices, hostile):
    job, docs = two_devices
    good = device_event([("dev-1", "status", downloading(docs["dev-1"]))])["Records"]
    result = on_device_message({"Records": [sqs_record(hostile), *good]}, None)
    assert result["batchItemFailures"] == []
    assert result["applied"] == 1
    assert result["malformed"] + result["ignored"] == 1  # cmd/result is not the job service's: ignored
    assert state(api, job, "dev-1") == "IN_PROGRESS"
    assert state(api, job, "dev-2") == "QUEUED"


def test_malformed_records_are_counted_and_never_reported_for_retry(api, world, two_devices):
    _, docs = two_devices
    event = device_event([("dev-2", "get", DEEP), ("dev-2", "status", b"\xff\xfe"),
                          ("dev-1", "status", downloading(docs["dev-1"]))])
    event["Records"].append(sqs_record("not json"))
    result = on_device_message(event, None)
    assert result["malformed"] == 3 and result["batchItemFailures"] == [] and result["applied"] == 1


# -- (b) an infrastructure failure fails only its own group's records --------------------------------


def test_a_failing_execution_group_reports_only_its_own_records(api, world, two_devices):
    job, docs = two_devices
    real = world.container.repository
    world.container.repository = FailingSaves(real, split_wire_id(docs["dev-1"].execution_id)[0])
    ack = wire.encode_ack(wire.make_ack(docs["dev-1"].execution_id, docs["dev-1"].stream, {0}, 10))
    event = device_event([("dev-1", "status", downloading(docs["dev-1"])),
                          ("dev-2", "status", downloading(docs["dev-2"])),
                          ("dev-1", "ack", ack),
                          ("dev-2", "get", DEEP)])
    records = event["Records"]
    result = on_device_message(event, None)
    assert failures(result) == ids([records[0], records[2]])  # dev-1's group only, the malformed one consumed
    assert result["malformed"] == 1 and result["applied"] == 1
    assert state(api, job, "dev-2") == "IN_PROGRESS"
    assert sorted(f.index for f in world.publisher.frames("dev-2")) == [0, 1, 2, 3]
    assert state(api, job, "dev-1") == "QUEUED"
    world.container.repository = real  # the partition recovers: the redelivered records apply
    again = on_device_message({"Records": [records[0], records[2]]}, None)
    assert again["batchItemFailures"] == [] and state(api, job, "dev-1") == "IN_PROGRESS"


def test_an_inventory_that_cannot_be_saved_fails_alone(api, world, two_devices):
    job, docs = two_devices

    class FailingDeviceSaves(FailingSaves):
        def save_device(self, device: Any) -> None:
            raise RuntimeError("table unavailable")

    world.container.repository = FailingDeviceSaves(world.container.repository, "none")
    inventory = messages.encode(messages.Inventory("1.2.0", "model-a", {"demo": "1.0.0"}))
    event = device_event([("dev-2", "status", inventory), ("dev-1", "status", downloading(docs["dev-1"]))])
    result = on_device_message(event, None)
    assert failures(result) == ids(event["Records"][:1])
    assert state(api, job, "dev-1") == "IN_PROGRESS"


# -- (c) each message is authorised by the EPN of its own topic --------------------------------------


@pytest.mark.parametrize("intruder_state", ["FAILED", "SUCCEEDED"])
@pytest.mark.parametrize("order", ["owner-first", "intruder-first"])
def test_another_devices_message_for_an_execution_is_dropped_whatever_the_order(
        api, world, two_devices, order, intruder_state):
    job, docs = two_devices
    x = docs["dev-1"].execution_id
    owner = ("dev-1", "status", downloading(docs["dev-1"]))
    intruder = ("dev-2", "status", status(x, intruder_state, None, 2, reason="forged"))
    items = [owner, intruder] if order == "owner-first" else [intruder, owner]
    result = on_device_message(device_event(items), None)
    assert (result["applied"], result["ignored"], result["batchItemFailures"]) == (1, 1, [])
    assert state(api, job, "dev-1") == "IN_PROGRESS"
    assert state(api, job, "dev-2") == "QUEUED"
    assert sorted(f.index for f in world.publisher.frames("dev-1")) == [0, 1, 2, 3]


def test_another_devices_acks_and_requests_never_move_a_transfer(api, world, two_devices):
    job, docs = two_devices
    d1 = docs["dev-1"]
    on_device_message(device_event([("dev-1", "status", downloading(d1))]), None)
    forged_ack = wire.encode_ack(wire.make_ack(d1.execution_id, d1.stream, set(range(d1.block_count)),
                                               d1.block_count))
    forged_get = wire.encode_request(wire.make_request(d1.execution_id, d1.stream, range(d1.block_count)))
    before = api.call("GET", f"/jobs/{job['job_id']}/executions/dev-1").json
    result = on_device_message(device_event([("dev-2", "ack", forged_ack), ("dev-2", "get", forged_get)]), None)
    after = api.call("GET", f"/jobs/{job['job_id']}/executions/dev-1").json
    assert (result["applied"], result["ignored"]) == (0, 2)
    assert after["blocks_acked"] == before["blocks_acked"] == 0
    assert len(world.publisher.frames("dev-1")) == 4


# -- the local bridge's pump honours the partial batch response ---------------------------------------


def test_pump_with_the_real_handler_deletes_all_but_the_failed_group(api, world, two_devices):
    job, docs = two_devices
    sqs = world.session.client("sqs")
    url = world.queues["device_queue_url"]
    for topic, payload in (("ota/dev-1/status", downloading(docs["dev-1"])),
                           ("ota/dev-2/status", downloading(docs["dev-2"])),
                           ("ota/dev-2/get", DEEP)):
        sqs.send_message(QueueUrl=url, MessageBody=rule_body(topic, payload, int(NOW * 1000)))
    world.container.repository = FailingSaves(world.container.repository,
                                              split_wire_id(docs["dev-1"].execution_id)[0])
    pump = SqsPump(sqs, world.settings.device_queue, on_device_message, function_name="on_device_message",
                   wait_seconds=0, retry_delay=0)
    assert pump.poll_once() == 3
    assert (pump.handled, pump.failed) == (2, 1)
    left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["topic"] for m in left] == ["ota/dev-1/status"]
    assert state(api, job, "dev-2") == "IN_PROGRESS"
