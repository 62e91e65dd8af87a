"""Per-device pacing of block sends under AWS IoT Core's per-connection limits, without sleeping: the
budget rules (pure; no I/O, no clock: callers pass `now`).

IoT Core limits each device connection to 100 publishes per second (both directions together) and
512 KiB per second. AWS states both as rates "per second" and documents no burst size or window
alignment; the reading taken here is the strictest one that every implementation (fixed one-second
windows, sliding windows, or a token bucket holding at least one second) accepts: **in any interval of
one second, the execution's sends stay within both limits** (WINDOW). A `Ledger` is what makes this
checkable across Lambda containers: the execution's sends of the last second, `(at, messages, bytes)`
per send, persisted in its transfer (domain/window.py) and written with the same conditional write
that records the blocks as sent, so two handlers can never spend one budget twice.

A handler sends what `room` allows now and no more; when blocks remain that the window would allow,
`free_at` says when the budget has room again, and the caller schedules its own continuation then
(services/pacing.py: a delayed SQS message; DelaySeconds is a whole number of seconds, so a paced
transfer moves in bursts of about one second's budget, one burst per second). A frame larger than the
whole byte budget is still allowed alone in an empty window (else it could never go out).

A group's broadcast (docs/protocol.md 15) reaches every member's connection: the group record keeps its
own ledger, and a member's unicast repairs are budgeted on the member's ledger (the two together may
exceed a member's budget by its repairs, rare by design: a lossy member falls back to unicast).

Does not: count the cloud's control messages (job documents, cancels: a handful per execution), or see
what IoT Core itself counts beyond the frame bytes (topic, MQTT framing: about 30 bytes a message).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WINDOW = 1.0  # seconds: the interval both limits apply to
MAX_DELAY = 900  # SQS's longest DelaySeconds
TOLERANCE = 1e-6  # seconds: float rounding, so a continuation due at `at` is never a hair too early
Ledger = tuple[tuple[float, int, int], ...]  # (at, messages, bytes) of each send in the last WINDOW seconds


@dataclass(frozen=True)
class Pace:
    """Cloud-to-device limits of one device: messages and bytes per WINDOW (0 = unlimited)."""

    messages: int = 0
    bytes: int = 0

    @property
    def enabled(self) -> bool:
        return self.messages > 0 or self.bytes > 0

    def live(self, ledger: Ledger, now: float) -> Ledger:
        """The sends that still count at `now` (sent less than WINDOW ago; a time ahead of `now`, from
        another container's clock, counts too)."""
        return tuple(entry for entry in ledger if now - entry[0] < WINDOW - TOLERANCE)

    def room(self, ledger: Ledger, now: float, frame_bytes: int) -> int | None:
        """How many frames of `frame_bytes` may be sent now; None when unlimited."""
        if not self.enabled:
            return None
        return self._room(self.live(ledger, now), max(1, frame_bytes))

    def _room(self, live: Ledger, frame_bytes: int) -> int:
        used_messages = sum(entry[1] for entry in live)
        used_bytes = sum(entry[2] for entry in live)
        counts: list[int] = []
        if self.messages > 0:
            counts.append(max(0, self.messages - used_messages))
        if self.bytes > 0:
            fits = max(0, self.bytes - used_bytes) // frame_bytes
            counts.append(1 if fits == 0 and not live else fits)  # an oversized frame alone in an empty window
        return min(counts)

    def spend(self, ledger: Ledger, now: float, count: int, frame_bytes: int) -> Ledger:
        """The ledger after sending `count` frames of `frame_bytes` at `now` (expired sends dropped)."""
        live = self.live(ledger, now)
        if count <= 0 or not self.enabled:
            return live
        return (*live, (now, count, count * frame_bytes))

    def free_at(self, ledger: Ledger, now: float, frame_bytes: int) -> float:
        """The earliest time, not before `now`, at which at least one more frame fits."""
        live = tuple(sorted(self.live(ledger, now)))
        frame_bytes = max(1, frame_bytes)
        for index in range(len(live) + 1):
            if self._room(live[index:], frame_bytes) >= 1:
                return now if index == 0 else max(now, live[index - 1][0] + WINDOW)
        return now + WINDOW  # not reached: an empty window always has room


def delay_seconds(at: float, now: float) -> int:
    """SQS DelaySeconds for a continuation due at `at`: whole seconds, never early, at least 1, at most
    MAX_DELAY (a message delivered before `at` would find no budget and have to wait again)."""
    return max(1, min(MAX_DELAY, math.ceil(at - now - TOLERANCE)))
