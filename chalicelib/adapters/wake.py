"""WakeQueue adapters (services/pacing.py): SQS, a paced execution's continuation sent to the
device-message queue with DelaySeconds; and a manual queue for tests and benchmarks that holds wakes
until the caller's clock reaches them.

Does not: decide when a wake is due (services/pacing.py) or consume wakes (the device-message trigger).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from typing import Any


class SqsWakeQueue:
    def __init__(self, client: Any, queue_name: str) -> None:
        self._sqs = client
        self._name = queue_name
        self._url: str | None = None

    def wake(self, body: dict[str, Any], delay_seconds: int) -> None:
        if self._url is None:
            self._url = self._sqs.get_queue_url(QueueName=self._name)["QueueUrl"]
        self._sqs.send_message(QueueUrl=self._url, MessageBody=json.dumps(body, separators=(",", ":")),
                               DelaySeconds=max(0, min(900, int(delay_seconds))))


class ManualWakeQueue:
    """Holds wakes in due order (sent time by `clock` + delay); `due(now)` pops the ones due by `now`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, dict[str, Any], int]] = []
        self._count = 0
        self.sent: list[tuple[float, int, dict[str, Any]]] = []  # (sent at, delay, body), every wake ever

    def wake(self, body: dict[str, Any], delay_seconds: int) -> None:
        now = self._clock()
        self._count += 1
        heapq.heappush(self._heap, (now + delay_seconds, self._count, body, delay_seconds))
        self.sent.append((now, delay_seconds, body))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)
