"""The bridge's pieces without processes: SQS event shape, delete-on-success, partial failures, batching."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from local.bridge import load_handler, scheduled_event
from local.forwarder import SQS_MAX_BYTES, batches, rule_body
from local.sqspump import LambdaContext, SqsPump, failed_ids, sqs_event


class FakeSqs:
    """Just the SQS calls a pump makes, recorded."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.deleted: list[str] = []
        self.released: list[tuple[str, int]] = []

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"http://sqs/{QueueName}"}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:123456789012:q"}}

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        batch, self.messages = self.messages[: kwargs["MaxNumberOfMessages"]], self.messages[10:]
        return {"Messages": batch} if batch else {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> None:
        self.deleted += [e["ReceiptHandle"] for e in Entries]

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> None:
        self.released += [(e["ReceiptHandle"], e["VisibilityTimeout"]) for e in Entries]


def _messages(n: int) -> list[dict[str, Any]]:
    return [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": f"body {i}", "MD5OfBody": "x",
             "Attributes": {"ApproximateReceiveCount": "1"},
             "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "k"}}} for i in range(n)]


def _raise(_event: dict[str, Any], _context: Any) -> Any:
    raise RuntimeError("handler broke")


@pytest.mark.parametrize(("handler", "deleted", "released"), [
    (lambda e, c: None, ["r0", "r1", "r2"], []),
    (lambda e, c: {"batchItemFailures": []}, ["r0", "r1", "r2"], []),
    (lambda e, c: {"batchItemFailures": [{"itemIdentifier": "m1"}]}, ["r0", "r2"], [("r1", 7)]),
    (_raise, [], [("r0", 7), ("r1", 7), ("r2", 7)]),
])
def test_pump_deletes_only_what_the_handler_took(handler: Any, deleted: list[str], released: list[Any]) -> None:
    sqs = FakeSqs(_messages(3))
    pump = SqsPump(sqs, "q", handler, function_name="f", retry_delay=7)
    assert pump.poll_once() == 3
    assert sqs.deleted == deleted
    assert sqs.released == released


def test_pump_gives_the_handler_a_lambda_sqs_event_and_context() -> None:
    seen: list[Any] = []
    pump = SqsPump(FakeSqs(_messages(12)), "q", lambda e, c: seen.append((e, c)), function_name="on_x")
    assert pump.poll_once() == 10
    event, context = seen[0]
    record = event["Records"][0]
    assert len(event["Records"]) == 10
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:q"
    assert (record["messageId"], record["receiptHandle"], record["body"]) == ("m0", "r0", "body 0")
    assert record["messageAttributes"]["kind"]["stringValue"] == "k"
    assert context.function_name == "on_x" and context.get_remaining_time_in_millis() > 0


def test_sqs_event_is_what_chalice_reads() -> None:
    from chalice.app import SQSEvent

    event = SQSEvent(sqs_event(_messages(2), "arn:q", "us-east-1"), LambdaContext("f"))
    assert [(r.body, r.receipt_handle) for r in event] == [("body 0", "r0"), ("body 1", "r1")]


@pytest.mark.parametrize(("result", "expected"), [
    (None, set()), ("ok", set()), ({"batchItemFailures": "x"}, set()),
    ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}, 3]}, {"a", "b"}),
])
def test_failed_ids(result: Any, expected: set[str]) -> None:
    assert failed_ids(result) == expected


def test_rule_body_is_the_iot_rule_shape() -> None:
    body = json.loads(rule_body("ota/dev-1/ack", b"\x00\xffbin", 1234))
    assert body == {"topic": "ota/dev-1/ack", "payload_b64": base64.b64encode(b"\x00\xffbin").decode(),
                    "received_at": 1234}


@pytest.mark.parametrize(("sizes", "expected"), [
    ([10] * 25, [10, 10, 5]),
    ([SQS_MAX_BYTES // 2 + 1] * 3, [1, 1, 1]),
    ([SQS_MAX_BYTES // 3] * 4, [3, 1]),
    ([], []),
])
def test_batches_respect_count_and_size(sizes: list[int], expected: list[int]) -> None:
    out = batches(["x" * n for n in sizes])
    assert [len(b) for b in out] == expected
    assert all(sum(len(x) for x in b) <= SQS_MAX_BYTES for b in out)


def test_scheduled_event_looks_like_eventbridge() -> None:
    event = scheduled_event("us-east-1")
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/ota-sweep"]


@pytest.mark.parametrize("spec", ["json", "json:nope", "no.such.module:x"])
def test_load_handler_refuses_bad_names(spec: str) -> None:
    with pytest.raises((ValueError, AttributeError, ImportError)):
        load_handler(spec)


def test_scheduler_keeps_ticking_after_a_failing_sweep() -> None:
    import threading

    from local.bridge import Scheduler

    calls: list[dict[str, Any]] = []
    enough = threading.Event()

    def sweep(event: dict[str, Any], _context: Any) -> None:
        calls.append(event)
        if len(calls) >= 3:
            enough.set()
        if len(calls) == 1:
            raise RuntimeError("first sweep fails")

    scheduler = Scheduler(sweep, 0.01, "us-east-1")
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    assert enough.wait(30)
    scheduler.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert all(c["source"] == "aws.events" for c in calls)
    assert len({c["id"] for c in calls}) == len(calls)


@pytest.mark.parametrize("module", ["local.cli", "local.bridge", "local.apiserver", "local.demo", "cli.main",
                                    "local.provisioner"])
def test_every_entry_point_answers_help(module: str) -> None:
    import subprocess
    import sys

    from local.stack import PROJECT_DIR

    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_DIR, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


class FlakySqs:
    """SendMessageBatch that fails the first entry of every call once, and raises on one call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.failed_once: set[str] = set()
        self.raised = False

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append([e["MessageBody"] for e in Entries])
        if not self.raised:
            self.raised = True
            raise ConnectionError("moto went away for a moment")
        first = Entries[0]["MessageBody"]
        if first not in self.failed_once:
            self.failed_once.add(first)
            return {"Failed": [{"Id": Entries[0]["Id"], "Code": "InternalError"}]}
        return {}


def test_batch_sender_retries_failed_entries_and_sends_each_body_once() -> None:
    from local.forwarder import BatchSender

    sqs = FlakySqs()
    sender = BatchSender(sqs, "http://sqs/q", retry_pause=0)
    bodies = [f"m{i}" for i in range(25)]
    for body in bodies:
        assert sender.put(body)
    sender.start()
    sender.close(timeout=30)
    delivered = [b for call in sqs.calls[1:] for b in call]  # the first call raised: nothing delivered
    assert sorted(set(delivered)) == sorted(bodies)
    assert all(len(call) <= 10 for call in sqs.calls)
    assert (sender.forwarded, sender.dropped) == (25, 0)


def test_batch_sender_drops_beyond_its_bound() -> None:
    from local.forwarder import MAX_WAITING, BatchSender

    sender = BatchSender(FlakySqs(), "http://sqs/q")  # not started: nothing drains
    assert all(sender.put("x") for _ in range(MAX_WAITING))
    assert not sender.put("one too many")
    assert sender.dropped == 1
