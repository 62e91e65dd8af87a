"""When to send an ack: the ack policy, as a small pure object driven by an injected clock. No I/O.

One ack covers many blocks (contiguous count + bitmap). The agent sends one when about window/2 new
blocks arrived since the last ack, when the download completes, or after `idle` seconds without a new
block while some are unacknowledged. Duplicates that add nothing do not count.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_SECONDS = 0.05


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
