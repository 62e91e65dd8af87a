"""Sleeping publish pacing for AWS IoT Core's per-connection limits (DESIGN.md section 4): what is left of
it is group broadcasts. Unicast blocks are budgeted per execution without sleeping (domain/pacing.py,
services/pacing.py); the composition root builds this wrapper with `groups_only=True`, so only the
publishes on a group topic (docs/protocol.md 15, one publish reaching every member's connection) wait here.

IoT Core allows each device connection about 100 publishes/s (both directions together) and 512 KiB/s.
`PacedPublisher` wraps any Publisher and keeps, per device (the `<epn>` of `ota/<epn>/...`), two token
buckets: messages/s and bytes/s, each with half a second of burst. A publish that would exceed
either waits (sleeps) until it fits; the wait is computed under a lock and slept outside it, so other
devices are not held up. The composition root wraps the publisher only when a rate is configured
(`OTA_DEVICE_PUBLISH_RATE`, `OTA_DEVICE_BYTE_RATE`, both unset = unlimited, the local default), so the
local path pays nothing.

Does not: coordinate across Lambda containers (each paces what it sends; two containers serving one
device at the same moment may together exceed the rate; IoT then throttles and the sweeper resends),
or pace the device's own publishes (the agent's ack policy keeps those near one per half window).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..domain.ports import Publisher

BURST_SECONDS = 0.5
MAX_DEVICES = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBucket:
    """Tokens refill at `rate` per second up to `capacity`; a reservation may go into debt and says how
    long to wait before acting on it."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity

    def reserve(self, state: _Bucket, cost: float, now: float) -> float:
        state.tokens = min(self.capacity, state.tokens + max(0.0, now - state.at) * self.rate) - cost
        state.at = now
        return 0.0 if state.tokens >= 0 else -state.tokens / self.rate


class PacedPublisher:
    def __init__(self, inner: Publisher, messages_per_second: float = 0.0, bytes_per_second: float = 0.0, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 groups_only: bool = False) -> None:
        self.inner = inner
        self._clock, self._sleep = clock, sleep
        self._groups_only = groups_only
        self._buckets: list[tuple[TokenBucket, bool]] = []
        if messages_per_second > 0:
            self._buckets.append((TokenBucket(messages_per_second, max(1.0, messages_per_second * BURST_SECONDS)),
                                  False))
        if bytes_per_second > 0:
            self._buckets.append((TokenBucket(bytes_per_second, max(1.0, bytes_per_second * BURST_SECONDS)), True))
        self._state: OrderedDict[str, list[_Bucket]] = OrderedDict()
        self._lock = threading.Lock()

    def delay(self, topic: str, size: int) -> float:
        """Reserve room for one publish on `topic`; returns the seconds to wait before sending it."""
        parts = topic.split("/")
        device = parts[1] if len(parts) > 2 and parts[0] == "ota" else topic
        if len(parts) == 5 and parts[1] == "g":  # a group topic (protocol.md 15): one bucket per group
            device = topic
        elif self._groups_only:
            return 0.0
        now = self._clock()
        with self._lock:
            state = self._state.pop(device, None)
            if state is None:
                state = [_Bucket(bucket.capacity, now) for bucket, _ in self._buckets]
            self._state[device] = state
            if len(self._state) > MAX_DEVICES:
                self._state.popitem(last=False)
            return max((bucket.reserve(s, float(size) if by_bytes else 1.0, now)
                        for (bucket, by_bytes), s in zip(self._buckets, state, strict=True)), default=0.0)

    def publish(self, topic: str, payload: bytes) -> None:
        wait = self.delay(topic, len(payload))
        if wait > 0:
            self._sleep(wait)
        self.inner.publish(topic, payload)

    def flush(self) -> None:
        self.inner.flush()
