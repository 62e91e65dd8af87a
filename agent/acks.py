"""When to send an ack: the ack policy, as a small pure object driven by an injected clock. No I/O.

One ack covers many blocks (contiguous count + bitmap). The agent sends one when about window/2 new
blocks arrived since the last ack, when the download completes, or after `idle` seconds without a new
block while some are unacknowledged. Duplicates that add nothing do not count.

Paced jobs (the job document's `pace_ms`, docs/protocol.md section 7): the cloud sends blocks in bursts
up to `pace_ms` apart, so a pause between two bursts is not a sender waiting for an ack. The idle timer
is then at least PACED_IDLE times the pace, and the repair interval at least PACED_REPAIR times it:
acks stay one per half window instead of one per burst, and no `get` goes out between bursts.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_SECONDS = 0.05
PACED_IDLE = 1.5
PACED_REPAIR = 1.5


def paced_idle(idle: float, pace_ms: int) -> float:
    """The ack idle timer for a job paced at `pace_ms` (0: not paced, the configured timer)."""
    return max(idle, PACED_IDLE * pace_ms / 1000.0)


def paced_repair(interval: float, pace_ms: int) -> float:
    """The repair (`get`) interval for a job paced at `pace_ms` (0: not paced, the configured interval)."""
    return max(interval, PACED_REPAIR * pace_ms / 1000.0)


@dataclass
class AckPolicy:
    window: int
    idle: float = IDLE_SECONDS
    fraction: float = 0.5
    pending: int = 0  # new blocks since the last ack
    last_block_at: float = 0.0
    sent: int = 0
    stale: bool = False  # duplicates arrived since the last ack: the sender may have missed it

    @property
    def threshold(self) -> int:
        return max(1, int(self.window * self.fraction))

    def on_block(self, now: float, *, new: bool, complete: bool) -> bool:
        """Record a received block; True if an ack is due now."""
        if new:
            self.pending += 1
        else:
            self.stale = True
        self.last_block_at = now
        return complete or self.pending >= self.threshold

    def due_at(self) -> float | None:
        """Time at which the idle timer fires, or None if nothing is waiting for an ack."""
        return self.last_block_at + self.idle if self.pending or self.stale else None

    def idle_due(self, now: float) -> bool:
        due = self.due_at()
        return due is not None and now >= due

    def acked(self) -> None:
        self.pending = 0
        self.stale = False
        self.sent += 1
