"""The local pump reads a handler's answer as Lambda does with ReportBatchItemFailures: the listed
messages are kept for redelivery, the rest deleted; an answer naming no valid message of the batch
fails the whole batch; with partial responses off the answer is ignored."""

from __future__ import annotations

from typing import Any

import pytest

from local.sqspump import SqsPump, kept_ids


class RecordingSqs:
    """The SQS calls a pump makes, answered from a fixed batch and recorded."""

    def __init__(self, count: int) -> None:
        self.batch = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": "{}"} for i in range(count)]
        self.deleted: list[str] = []
        self.released: list[str] = []

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"http://sqs/{QueueName}"}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:123456789012:q"}}

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        batch, self.batch = self.batch, []
        return {"Messages": batch}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.deleted += [e["ReceiptHandle"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> None:
        self.released += [e["ReceiptHandle"] for e in Entries]


BATCH = ["m0", "m1", "m2"]


@pytest.mark.parametrize(("answer", "kept"), [
    (None, set()),
    ({}, set()),
    ({"applied": 3}, set()),
    ({"batchItemFailures": None}, set()),
    ({"batchItemFailures": []}, set()),
    ({"batchItemFailures": [{"itemIdentifier": "m1"}], "applied": 2}, {"m1"}),
    ({"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m2"}]}, {"m0", "m2"}),
    # Lambda's rule: an entry it cannot match to a message of the batch fails the whole batch
    ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "elsewhere"}]}, set(BATCH)),
    ({"batchItemFailures": [{"itemIdentifier": ""}]}, set(BATCH)),
    ({"batchItemFailures": [{"itemIdentifier": None}]}, set(BATCH)),
    ({"batchItemFailures": [{"id": "m1"}]}, set(BATCH)),
    ({"batchItemFailures": ["m1"]}, set(BATCH)),
    ({"batchItemFailures": "m1"}, set(BATCH)),
])
def test_kept_ids_follow_lambdas_partial_batch_rules(answer, kept):
    assert kept_ids(answer, BATCH) == kept


def test_pump_deletes_the_consumed_and_releases_the_listed():
    sqs = RecordingSqs(3)
    pump = SqsPump(sqs, "q", lambda e, c: {"batchItemFailures": [{"itemIdentifier": "m2"}]}, function_name="f")
    pump.poll_once()
    assert (sqs.deleted, sqs.released, pump.handled, pump.failed) == (["r0", "r1"], ["r2"], 2, 1)


def test_pump_without_partial_responses_ignores_the_answer_like_lambda():
    sqs = RecordingSqs(2)
    pump = SqsPump(sqs, "q", lambda e, c: {"batchItemFailures": [{"itemIdentifier": "m0"}]}, function_name="f",
                   report_batch_item_failures=False)
    pump.poll_once()
    assert (sqs.deleted, sqs.released) == (["r0", "r1"], [])
