"""Pure block planning for block-mode delivery: the acked bitmap, the send window and retransmissions.

A `Transfer` says which blocks the device acknowledged (LSB-first bitmap, like otaformat.wire), which
have been sent at least once (every index below `next_index`), and when. Acks are idempotent: a
duplicated or reordered ack never counts a block twice. Planning answers "which blocks go out now":
new blocks up to the window, blocks a device asked for again, or blocks whose ack is overdue.
`recent` remembers when blocks were last sent (runs `(first, end, at)`, newest last, pruned after
RECENT_HORIZON seconds): a request for a block sent less than `guard` seconds ago is already answered
by that send (e.g. the device's first `get`, published before the first window reached it, landing in
a later SQS batch than its DOWNLOADING status) and does not send it twice.

Acks are believed only for blocks the cloud sent: an index at or beyond `next_index` (never sent) or
beyond `total` is ignored, so `acked_count <= next_index <= total` always holds and a device cannot
claim progress that never happened (nor make the cloud skip blocks it never sent).

Fast repair (`plan_gaps`): `recent` also records the order of sends, so an ack that holds a block sent
*after* an unacknowledged one proves that one lost (MQTT keeps the order of one publisher's messages);
the cloud resends it at once, without waiting for the device's `get` or the sweeper.
Group delivery (domain/group.py): a member's transfer is `sync`ed with its group's broadcast cursor
before its acks are applied (blocks the group broadcast count as sent to it, with their send times for
the guard and fast repair); `fall_back` makes it unicast for good, sending again from its first
unacknowledged block.
No I/O, no clock: callers pass `now`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

MAX_TRANSFER_BLOCKS = 1 << 20  # the acked bitmap (128 KiB) must fit one table item
RECENT_HORIZON = 60.0  # seconds a send is remembered (longer than any guard)
MAX_RECENT_RUNS = 32
REORDER_SLACK = 0.05  # seconds: sends this close together (concurrent handlers) may arrive in either order
MEMBER_REORDER_SLACK = 1.0  # ... for a group member, whose broadcasts and repairs come from many handlers


@dataclass(frozen=True)
class Transfer:
    total: int
    window: int
    acked: bytes = b""
    acked_count: int = 0
    next_index: int = 0
    retransmissions: int = 0
    sent_count: int = 0
    last_send_at: float = 0.0
    last_ack_at: float = 0.0
    recent: tuple[tuple[int, int, float], ...] = ()
    member: bool = False  # follows its group's broadcast (docs/protocol.md section 15)
    unicast: bool = False  # fell back from its group: unicast for the rest of the attempt
    paced: tuple[tuple[float, int, int], ...] = ()  # sends of the last second (domain/pacing.py Ledger)
    wake_at: float = 0.0  # when the scheduled continuation is due (0: none scheduled; services/pacing.py)
    deferred: tuple[int, ...] = ()  # requested blocks the pace held back: resent by the next handler (a wake)
    heard_at: float = 0.0  # the cloud's clock when it last applied a message of the device (not the broker's)

    @classmethod
    def start(cls, total: int, window: int) -> Transfer:
        return cls(total=total, window=window, acked=bytes((total + 7) // 8))

    def is_acked(self, index: int) -> bool:
        return 0 <= index < self.total and bool(self.acked[index >> 3] >> (index & 7) & 1)

    @property
    def complete(self) -> bool:
        return self.acked_count >= self.total

    @property
    def in_flight(self) -> int:
        """Blocks sent at least once and not acknowledged yet."""
        acked_below = self.acked_count if self.next_index >= self.total else _count_below(self.acked, self.next_index)
        return self.next_index - acked_below

    def ack(self, indices: Iterable[int], now: float) -> tuple[Transfer, int]:
        """Mark `indices` acknowledged; return the new transfer and how many were new. Indices never sent
        (at or beyond `next_index`) or out of range are ignored: an ack is believed only for blocks sent."""
        bits = bytearray(self.acked)
        new = 0
        sent_below = min(self.next_index, self.total)
        for i in indices:
            if 0 <= i < sent_below and not bits[i >> 3] >> (i & 7) & 1:
                bits[i >> 3] |= 1 << (i & 7)
                new += 1
        if not new:
            return self, 0
        return replace(self, acked=bytes(bits), acked_count=self.acked_count + new, last_ack_at=now), new

    def unacked_sent(self, limit: int) -> list[int]:
        """Sent-but-unacknowledged indices, lowest first, at most `limit`."""
        out: list[int] = []
        for i in range(min(self.next_index, self.total)):
            if len(out) >= limit:
                break
            if not self.is_acked(i):
                out.append(i)
        return out

    @property
    def new_room(self) -> int:
        """How many first sends the window allows now (whatever a pace allows)."""
        return max(0, min(self.window - self.in_flight, self.total - self.next_index))

    def plan_new(self, now: float, limit: int | None = None) -> tuple[Transfer, list[int]]:
        """First sends that fit the window (and `limit`): indices from `next_index` on."""
        room = self.window - self.in_flight if limit is None else min(limit, self.window - self.in_flight)
        if room <= 0 or self.next_index >= self.total:
            return self, []
        end = min(self.total, self.next_index + room)
        chosen = [i for i in range(self.next_index, end) if not self.is_acked(i)]
        return replace(self, next_index=end, sent_count=self.sent_count + len(chosen), last_send_at=now,
                       recent=self._remember(chosen, now)), chosen

    def sent_at(self, index: int) -> float | None:
        """When `index` was last sent, if within the remembered horizon."""
        for first, end, at in reversed(self.recent):
            if first <= index < end:
                return at
        return None

    def plan_requested(self, wanted: Iterable[int], now: float, guard: float = 0.0,
                       limit: int | None = None, requested_at: float | None = None) -> tuple[Transfer, list[int]]:
        """Blocks the device asked for again: already sent, not acked, not sent within `guard` seconds
        before the request arrived (`requested_at`, the broker's time of the request; default `now`, the
        time of these sends); at most one window (and `limit`). Counted as resends. A block sent after
        the request arrived answers it already, however late the request is handled."""
        asked = now if requested_at is None else requested_at
        candidates = sorted({i for i in wanted if 0 <= i < self.next_index and not self.is_acked(i)})
        chosen: list[int] = []
        most = self.window if limit is None else min(limit, self.window)
        for i in candidates:
            if len(chosen) >= most:
                break
            at = self.sent_at(i) if guard > 0 else None
            if at is None or asked - at >= guard:
                chosen.append(i)
        if not chosen:
            return self, []
        return replace(self, retransmissions=self.retransmissions + len(chosen), last_send_at=now,
                       sent_count=self.sent_count + len(chosen), recent=self._remember(chosen, now)), chosen

    def plan_gaps(self, now: float, limit: int | None = None,
                  slack: float = REORDER_SLACK) -> tuple[Transfer, list[int]]:
        """Fast repair: resend (at most one window of) sent, unacknowledged blocks that an acknowledged
        block proves lost, i.e. one sent after them in the same send (higher index) or in a send at least
        `slack` seconds later (a group member: MEMBER_REORDER_SLACK, its broadcasts and repairs come from
        different handlers). Only sends still in `recent` count. Counted as resends."""
        last: dict[int, tuple[int, float]] = {}  # index -> (position of its last send, when)
        for position, (first, end, at) in enumerate(self.recent):
            for i in range(first, end):
                last[i] = (position, at)
        newest_acked_at = -1.0
        top_acked: dict[int, int] = {}  # send position -> highest acked index last sent there
        for i, (position, at) in last.items():
            if self.is_acked(i):
                newest_acked_at = max(newest_acked_at, at)
                top_acked[position] = max(top_acked.get(position, -1), i)
        if newest_acked_at < 0:
            return self, []
        chosen = sorted(i for i, (position, at) in last.items() if not self.is_acked(i)
                        and (newest_acked_at - at >= slack or top_acked.get(position, -1) > i))
        chosen = chosen[: self.window if limit is None else min(limit, self.window)]
        if not chosen:
            return self, []
        return replace(self, retransmissions=self.retransmissions + len(chosen), last_send_at=now,
                       sent_count=self.sent_count + len(chosen), recent=self._remember(chosen, now)), chosen

    def _remember(self, indices: list[int], now: float) -> tuple[tuple[int, int, float], ...]:
        runs = [r for r in self.recent if now - r[2] < RECENT_HORIZON]
        for i in indices:
            if runs and runs[-1][1] == i and runs[-1][2] == now:
                runs[-1] = (runs[-1][0], i + 1, now)
            else:
                runs.append((i, i + 1, now))
        return tuple(runs[-MAX_RECENT_RUNS:])

    def plan_overdue(self, now: float, ack_timeout: float, limit: int | None = None) -> tuple[Transfer, list[int]]:
        """If nothing was acked, sent or heard from the device for `ack_timeout`, resend the oldest unacked
        window (at most `limit`). `heard_at` keeps a device whose messages are still being handled (a
        backlog delays its acks, it did not lose them) from being resent what it already holds."""
        if self.complete or now - max(self.last_send_at, self.last_ack_at, self.heard_at) < ack_timeout:
            return self, []
        chosen = self.unacked_sent(self.window if limit is None else min(limit, self.window))
        if not chosen:
            return self, []
        return replace(self, retransmissions=self.retransmissions + len(chosen), last_send_at=now,
                       sent_count=self.sent_count + len(chosen), recent=self._remember(chosen, now)), chosen

    def sync(self, group_next: int, group_recent: Iterable[tuple[int, int, float]]) -> Transfer:
        """A member's view of its group: blocks below `group_next` count as sent to it, and the group's
        recent broadcasts join its own recent sends (newest last, the most recent MAX_RECENT_RUNS)."""
        if not self.member:
            return self
        end = min(max(self.next_index, group_next), self.total)
        runs = sorted({*self.recent, *group_recent}, key=lambda run: run[2])
        recent = tuple(runs[-MAX_RECENT_RUNS:])
        latest = max((run[2] for run in recent), default=self.last_send_at)
        if end == self.next_index and recent == self.recent:
            return self
        return replace(self, next_index=end, sent_count=self.sent_count + end - self.next_index, recent=recent,
                       last_send_at=max(self.last_send_at, latest))

    def fall_back(self) -> Transfer:
        """Leave the group for good: blocks broadcast but not acknowledged no longer count as sent, so the
        unicast window starts again at the first unacknowledged block (acked ones are never resent)."""
        first = next((i for i in range(self.total) if not self.is_acked(i)), self.total)
        return replace(self, member=False, unicast=True, next_index=min(self.next_index, first), recent=())

    def to_record(self) -> dict[str, Any]:
        return {
            "total": self.total, "window": self.window, "acked": base64.b64encode(self.acked).decode(),
            "acked_count": self.acked_count, "next_index": self.next_index, "retransmissions": self.retransmissions,
            "sent_count": self.sent_count, "last_send_at": self.last_send_at, "last_ack_at": self.last_ack_at,
            "recent": [list(run) for run in self.recent], "member": self.member, "unicast": self.unicast,
            "paced": [list(send) for send in self.paced], "wake_at": self.wake_at, "deferred": list(self.deferred),
            "heard_at": self.heard_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Transfer:
        acked = record["acked"]
        if isinstance(acked, dict):
            acked = acked["b64"]
        recent = tuple((int(a), int(b), float(c)) for a, b, c in record.get("recent", ()))
        paced = tuple((float(a), int(m), int(b)) for a, m, b in record.get("paced", ()))
        return cls(**{**record, "acked": base64.b64decode(acked), "recent": recent, "paced": paced,
                      "wake_at": float(record.get("wake_at", 0.0)), "heard_at": float(record.get("heard_at", 0.0)),
                      "deferred": tuple(int(i) for i in record.get("deferred", ()))})


def _count_below(bitmap: bytes, end: int) -> int:
    full, rest = divmod(end, 8)
    count = int.from_bytes(bitmap[:full], "little").bit_count()
    if rest and full < len(bitmap):
        count += (bitmap[full] & ((1 << rest) - 1)).bit_count()
    return count
