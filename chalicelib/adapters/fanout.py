"""FanoutQueue adapters: SQS (the `fanout` queue, consumed by chalicelib/triggers/fanout.py) and an
in-process one that runs the handler at once (tests; a deployment without OTA_FANOUT_QUEUE).

Does not: decide anything about jobs (services/fanout.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any


class SqsFanoutQueue:
    def __init__(self, client: Any, queue_name: str) -> None:
        self._sqs = client
        self._name = queue_name
        self._url: str | None = None

    def send(self, messages: Sequence[dict[str, Any]]) -> None:
        if self._url is None:
            self._url = self._sqs.get_queue_url(QueueName=self._name)["QueueUrl"]
        for start in range(0, len(messages), 10):
            entries = [{"Id": str(n), "MessageBody": json.dumps(m, separators=(",", ":"))}
                       for n, m in enumerate(messages[start : start + 10])]
            while entries:
                failed = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries).get("Failed") or []
                retry = {f["Id"] for f in failed if not f.get("SenderFault")}
                if len(retry) != len(failed):
                    raise RuntimeError(f"SQS refused fan-out messages: {failed[:3]}")
                entries = [e for e in entries if e["Id"] in retry]


class InlineFanoutQueue:
    """Runs `handle(message, queue)` for every message sent, and for what those send, before returning
    (depth first would recurse: a pending list keeps it a loop)."""

    def __init__(self, handle: Callable[[dict[str, Any], InlineFanoutQueue], Any]) -> None:
        self._handle = handle
        self._pending: list[dict[str, Any]] = []
        self._running = False
        self.sent = 0

    def send(self, messages: Sequence[dict[str, Any]]) -> None:
        self._pending.extend(messages)
        self.sent += len(messages)
        if self._running:
            return
        self._running = True
        try:
            while self._pending:
                self._handle(self._pending.pop(0), self)
        finally:
            self._running = False
