"""What Lambda's SQS event source mapping does, for one queue: poll, call the handler, delete on success.

A pump long-polls its queue (up to 10 messages, a short wait), builds a real SQS-shaped Lambda event
(Records with messageId, receiptHandle, body, attributes, messageAttributes, md5OfBody, eventSource
"aws:sqs", eventSourceARN, awsRegion) and calls the handler with a Lambda-like context. Messages are
deleted only when the handler returns without raising. With `report_batch_item_failures` (the
mapping's FunctionResponseTypes: [ReportBatchItemFailures], the default here) the answer is read as
Lambda reads it: `{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}` keeps just the listed
messages and deletes the others; an empty or missing list, or no answer, deletes them all; an entry
without a valid identifier of this batch makes the whole batch a failure (Lambda's rule). Kept
messages come back after `retry_delay` seconds, and the queue's redrive policy moves them to the
dead-letter queue after maxReceiveCount receives. It does not create queues.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]
log = logging.getLogger("local.bridge")


@dataclass
class LambdaContext:
    """The attributes Lambda's context object has, as far as handlers and Powertools read them."""

    function_name: str
    timeout_ms: int = 900_000
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "us-east-1"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self.started) * 1000))


def _lambda_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in attrs.items():
        item: dict[str, Any] = {"dataType": value.get("DataType", "String"), "stringListValues": [],
                                "binaryListValues": []}
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = value["BinaryValue"]
        out[name] = item
    return out


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda event for a batch of messages as returned by sqs.receive_message."""
    return {"Records": [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": dict(m.get("Attributes", {})),
            "messageAttributes": _lambda_attributes(m.get("MessageAttributes", {})),
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        for m in messages
    ]}


def kept_ids(result: Any, batch_ids: list[str]) -> set[str]:
    """The message ids Lambda keeps for redelivery after a handler answered `result` (partial batch
    responses on): the listed ones; all of them if any entry is not a dict naming a message of the batch."""
    if not isinstance(result, dict) or result.get("batchItemFailures") is None:
        return set()
    failures = result["batchItemFailures"]
    if not isinstance(failures, list):
        return set(batch_ids)
    named = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
    if any(not isinstance(i, str) or i not in batch_ids for i in named):
        return set(batch_ids)
    return {str(i) for i in named}


def failed_ids(result: Any) -> set[str]:
    """Message ids a handler reported as failed with the partial-batch-response shape."""
    if not isinstance(result, dict) or not isinstance(result.get("batchItemFailures"), list):
        return set()
    return {str(f.get("itemIdentifier")) for f in result["batchItemFailures"] if isinstance(f, dict)}


class SqsPump:
    """Poll one queue and feed its messages to one handler until stopped."""

    def __init__(self, sqs: Any, queue_name: str, handler: Handler, *, function_name: str,
                 batch_size: int = 10, wait_seconds: int = 1, retry_delay: int = 5, region: str = "us-east-1",
                 on_error: Callable[[str, BaseException], None] | None = None,
                 report_batch_item_failures: bool = True) -> None:
        self._sqs = sqs
        self._handler = handler
        self._function_name = function_name
        self._batch = max(1, min(10, batch_size))
        self._wait = wait_seconds
        self._retry_delay = retry_delay
        self._region = region
        self._on_error = on_error
        self._partial = report_batch_item_failures
        self._stop = threading.Event()
        self.queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                  AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.handled = 0
        self.failed = 0
        self.batches = 0
        self.handler_seconds = 0.0

    def stats(self) -> str:
        return (f"{self._function_name}: {self.handled} handled, {self.failed} failed, {self.batches} batches, "
                f"{self.handler_seconds:.1f}s in the handler")

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as err:  # keep pumping: a broken poll must not end the bridge
                log.exception("polling %s failed", self._function_name)
                if self._on_error:
                    self._on_error(self._function_name, err)
                self._stop.wait(1.0)

    def poll_once(self) -> int:
        """Receive one batch and dispatch it; return how many messages were received."""
        reply = self._sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self._batch,
                                          WaitTimeSeconds=self._wait, AttributeNames=["All"],
                                          MessageAttributeNames=["All"])
        messages = reply.get("Messages", [])
        if messages:
            self.dispatch(messages)
        return len(messages)

    def dispatch(self, messages: list[dict[str, Any]]) -> None:
        event = sqs_event(messages, self.queue_arn, self._region)
        context = LambdaContext(self._function_name, region=self._region)
        self.batches += 1
        began = time.monotonic()
        try:
            result = self._handler(event, context)
        except Exception as err:
            self.handler_seconds += time.monotonic() - began
            self.failed += len(messages)
            log.warning("%s raised %s: %s; %d message(s) kept for retry", self._function_name,
                        type(err).__name__, err, len(messages))
            if self._on_error:
                self._on_error(self._function_name, err)
            self._release(messages)
            return
        self.handler_seconds += time.monotonic() - began
        failed = kept_ids(result, [m["MessageId"] for m in messages]) if self._partial else set()
        done = [m for m in messages if m["MessageId"] not in failed]
        kept = [m for m in messages if m["MessageId"] in failed]
        self.handled += len(done)
        self.failed += len(kept)
        if kept:
            log.info("%s kept %d of %d message(s) for retry (batchItemFailures)", self._function_name,
                     len(kept), len(messages))
        if done:
            self._delete(done)
        if kept:
            self._release(kept)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        """Delete consumed messages; one that fails to delete comes back and is handled again (idempotent)."""
        reply = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        failed = (reply.get("Failed") or []) if isinstance(reply, dict) else []
        if failed:
            log.warning("%s: %d consumed message(s) could not be deleted and will be redelivered",
                        self._function_name, len(failed))

    def _release(self, messages: list[dict[str, Any]]) -> None:
        """Make kept messages visible again after retry_delay (Lambda waits for the visibility timeout)."""
        try:
            self._sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self._retry_delay}
                for i, m in enumerate(messages)])
        except Exception:  # the visibility timeout brings them back anyway
            log.exception("could not shorten the visibility of kept messages")
