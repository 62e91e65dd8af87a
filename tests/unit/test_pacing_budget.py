"""Budget and continuation rules of paced delivery (chalicelib/domain/pacing.py, services/pacing.py),
table-driven with an injected clock: nothing waits."""

from __future__ import annotations

import pytest

from chalicelib.adapters.wake import ManualWakeQueue
from chalicelib.domain.models import Job
from chalicelib.domain.pacing import Pace, delay_seconds
from chalicelib.domain.window import Transfer
from chalicelib.services.pacing import Budget, Pacing, decode_wake, frame_bytes
from otaformat.errors import MalformedError

F = 1000  # frame bytes in these tables
T0 = 100.0


@pytest.mark.parametrize(("pace", "ledger", "now", "room"), [
    (Pace(), (), T0, None),  # unlimited
    (Pace(bytes=5 * F), (), T0, 5),
    (Pace(bytes=5 * F + F - 1), (), T0, 5),  # whole frames only
    (Pace(messages=3, bytes=5 * F), (), T0, 3),  # the tighter limit wins
    (Pace(bytes=5 * F), ((T0 - 0.5, 3, 3 * F),), T0, 2),  # sends of the last second count
    (Pace(bytes=5 * F), ((T0 - 1.0, 5, 5 * F),), T0, 5),  # ... and one second later they do not
    (Pace(bytes=5 * F), ((T0 - 0.2, 5, 5 * F),), T0, 0),
    (Pace(bytes=5 * F), ((T0 + 0.3, 2, 2 * F),), T0, 3),  # a send ahead of this clock counts too
    (Pace(bytes=F // 2), (), T0, 1),  # a frame larger than the budget goes alone in an empty second
    (Pace(bytes=F // 2), ((T0 - 0.5, 1, F),), T0, 0),
])
def test_room(pace, ledger, now, room):
    assert pace.room(ledger, now, F) == room


@pytest.mark.parametrize(("ledger", "now", "due"), [
    ((), T0, T0),
    (((T0 - 0.2, 5, 5 * F),), T0, T0 + 0.8),
    (((T0 - 0.6, 3, 3 * F), (T0 - 0.1, 2, 2 * F)), T0, T0 + 0.4),  # the older send frees 3 frames first
    (((T0 - 0.6, 2, 2 * F), (T0 - 0.1, 3, 3 * F)), T0, T0 + 0.4),
])
def test_free_at(ledger, now, due):
    assert Pace(bytes=5 * F).free_at(ledger, now, F) == pytest.approx(due)


@pytest.mark.parametrize(("at", "now", "delay"), [
    (T0 + 1.0, T0, 1), (T0 + 0.2, T0, 1), (T0 + 1.2, T0, 2), (T0, T0, 1), (T0 + 5000, T0, 900),
])
def test_delay_seconds_are_whole_and_never_early(at, now, delay):
    assert delay_seconds(at, now) == delay
    assert now + delay >= at - 1e-6 or delay == 900


def test_spend_keeps_only_the_last_second():
    pace = Pace(bytes=5 * F)
    ledger = pace.spend(((T0 - 2.0, 5, 5 * F),), T0, 2, F)
    assert ledger == ((T0, 2, 2 * F),)
    assert pace.spend(ledger, T0 + 0.1, 0, F) == ledger


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def job(block_size: int = F - 13) -> Job:
    return Job(job_id="job-1", upload_id="u", mode="block", block_size=block_size, window=16, stall_seconds=60,
               total_seconds=600, targets=(), target_spec={}, state="ACTIVE", created_at=0.0, app="a",
               app_version="1", package_size=100 * block_size, package_sha256="0" * 64, repository_key="k",
               block_count=100)


def budget_for(clock: Clock, woken_at: float | None = None) -> Budget:
    pacing = Pacing(Pace(bytes=5 * F), ManualWakeQueue(clock), clock)
    return Budget(pacing, job(), woken_at)


@pytest.mark.parametrize(("wake_at", "woken_at", "schedules"), [
    (0.0, None, True),  # none pending: schedule one
    (T0 - 3.0, None, True),  # the pending one is overdue (lost): schedule anew
    (T0 + 0.5, None, False),  # one is pending: its wake will send
    (T0 + 0.5, T0 + 0.5, True),  # this handler IS that wake (delivered a hair early): schedule the next
])
def test_one_wake_at_most_is_pending(wake_at, woken_at, schedules):
    clock = Clock()
    budget = budget_for(clock, woken_at)
    transfer = Transfer.start(100, 16)
    transfer = Transfer(**{**transfer.__dict__, "wake_at": wake_at})
    planned, chosen = budget.take(transfer, lambda limit: transfer.plan_new(T0, limit))
    assert len(chosen) == 5
    settled, body, delay = budget.settle(planned, "ex-1", "dev-1")
    assert (body is not None) is schedules
    if schedules:
        assert body == {"wake": {"x": "ex-1", "epn": "dev-1", "at": T0 + 1.0}} and delay == 1
        assert settled.wake_at == T0 + 1.0
    assert settled.paced == ((T0, 5, 5 * F),)


@pytest.mark.parametrize(("window", "sent", "wakes"), [
    (16, 5, True),  # the budget held blocks back: continue by a wake
    (4, 4, False),  # the window held them back: the device's acks continue
])
def test_a_wake_only_when_the_budget_holds_blocks_back(window, sent, wakes):
    clock = Clock()
    budget = budget_for(clock)
    transfer = Transfer.start(100, window)
    planned, chosen = budget.take(transfer, lambda limit: transfer.plan_new(T0, limit))
    _, body, _ = budget.settle(planned, "ex-1", "dev-1")
    assert (len(chosen), body is not None) == (sent, wakes)


def test_unpaced_budget_changes_nothing():
    budget = Budget(None, job())
    transfer = Transfer.start(100, 16)
    planned, chosen = budget.take(transfer, lambda limit: transfer.plan_new(T0, limit))
    assert len(chosen) == 16
    assert budget.settle(planned, "ex-1", "dev-1") == (planned, None, 0)


def test_transfer_records_keep_the_ledger():
    transfer = Transfer(**{**Transfer.start(10, 4).__dict__, "paced": ((T0, 2, 2000),), "wake_at": T0 + 1})
    assert Transfer.from_record(transfer.to_record()) == transfer
    old = {k: v for k, v in transfer.to_record().items() if k not in ("paced", "wake_at")}
    assert Transfer.from_record(old).paced == ()  # records written before pacing still load


@pytest.mark.parametrize("payload", [b"[]", b'{"x": 1, "at": 1}', b'{"x": "ex-1", "at": true}', b"{", b"x" * 600])
def test_malformed_wakes(payload):
    with pytest.raises(MalformedError):
        decode_wake(payload)


def test_frame_bytes_counts_the_header():
    assert frame_bytes(job(32768)) == 32768 + 13
