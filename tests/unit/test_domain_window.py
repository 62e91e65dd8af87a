"""Pure block planning: window, acks (idempotent under any interleaving), requests, overdue resends."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.window import Transfer
from chalicelib.services.delivery import ACK_TIMEOUT_SECONDS, REQUEST_GUARD_SECONDS
from otaformat import wire


def test_first_plan_fills_the_window():
    transfer, sent = Transfer.start(10, 4).plan_new(0.0)
    assert sent == [0, 1, 2, 3] and transfer.in_flight == 4 and transfer.next_index == 4
    again, more = transfer.plan_new(0.0)
    assert more == [] and again == transfer


@pytest.mark.parametrize(("acked", "expected_new"), [
    ([0], [4]), ([0, 1, 2, 3], [4, 5, 6, 7]), ([3], [4]), ([9], []), ([], []),
])
def test_acks_free_room_in_the_window(acked, expected_new):
    transfer, _ = Transfer.start(10, 4).plan_new(0.0)
    transfer, _ = transfer.ack(acked, 1.0)
    _, sent = transfer.plan_new(1.0)
    assert sent == expected_new


def test_last_block_and_completion():
    transfer = Transfer.start(3, 8)
    transfer, sent = transfer.plan_new(0.0)
    assert sent == [0, 1, 2]
    transfer, new = transfer.ack([0, 1, 2, 2, 7, -1], 1.0)
    assert new == 3 and transfer.complete and transfer.in_flight == 0


def test_requests_resend_only_sent_unacked_blocks_and_count_them():
    transfer, _ = Transfer.start(10, 4).plan_new(0.0)
    transfer, _ = transfer.ack([1], 1.0)
    transfer, resend = transfer.plan_requested([0, 1, 2, 8], 2.0)
    assert resend == [0, 2] and transfer.retransmissions == 2


@pytest.mark.parametrize(("elapsed", "expected"), [(1.0, []), (5.0, [0, 2, 3]), (50.0, [0, 2, 3])])
def test_overdue_resend(elapsed, expected):
    transfer, _ = Transfer.start(10, 4).plan_new(0.0)
    transfer, _ = transfer.ack([1], 0.0)
    after, resend = transfer.plan_overdue(elapsed, 5.0)
    assert resend == expected
    assert after.retransmissions == len(expected)


def test_record_roundtrip():
    transfer, _ = Transfer.start(100, 16).plan_new(3.0)
    transfer, _ = transfer.ack([0, 5, 99], 4.0)
    assert Transfer.from_record(transfer.to_record()) == transfer


ack_sets = st.lists(st.sets(st.integers(min_value=-3, max_value=70), max_size=20), max_size=12)


@settings(max_examples=200, deadline=None)
@given(total=st.integers(min_value=1, max_value=64), window=st.integers(min_value=1, max_value=16),
       batches=ack_sets, order=st.randoms(use_true_random=False), copies=st.integers(min_value=1, max_value=3))
def test_any_interleaving_of_acks_counts_each_block_once(total, window, batches, order, copies):
    """Duplicated and reordered acks give the same bitmap and counters as one ack of their union."""
    start, _ = Transfer.start(total, window).plan_new(0.0)
    shuffled = [b for b in batches for _ in range(copies)]
    order.shuffle(shuffled)
    transfer, counted = start, 0
    for batch in shuffled:
        transfer, new = transfer.ack(batch, 1.0)
        counted += new
    union = {i for b in batches for i in b if 0 <= i < start.next_index}  # acks only count for blocks sent
    reference, _ = start.ack(union, 1.0)
    assert transfer.acked == reference.acked
    assert transfer.acked_count == counted == len(union)
    assert 0 <= transfer.in_flight <= window


@settings(max_examples=100, deadline=None)
@given(total=st.integers(min_value=1, max_value=200), window=st.integers(min_value=1, max_value=32),
       drops=st.lists(st.booleans(), max_size=400))
def test_window_protocol_always_finishes_and_never_exceeds_the_window(total, window, drops):
    """Send, lose some (the k-th send is lost if drops[k]), ack the rest, resend overdue: every block
    arrives and the blocks in flight never exceed the window."""
    transfer = Transfer.start(total, window)
    now, got, sends = 0.0, set(), 0
    for _ in range(len(drops) + 2 * total + 10):
        transfer, fresh = transfer.plan_new(now)
        transfer, again = transfer.plan_overdue(now, 5.0)
        assert transfer.in_flight <= window
        for index in fresh + again:
            if not (sends < len(drops) and drops[sends]):
                got.add(index)
            sends += 1
        transfer, _ = transfer.ack(got, now)
        if transfer.complete:
            break
        now += 3.0
    assert transfer.complete and transfer.acked_count == total


@pytest.mark.parametrize(("asked_after", "guard", "resent"), [
    (0.1, 5.0, []),               # the request crossed the first window: nothing goes twice
    (4.9, 5.0, []),
    (5.0, 5.0, [0, 1, 2, 3]),     # asked again after the ack timeout: resent
    (0.1, 0.0, [0, 1, 2, 3]),     # no guard: the old behaviour
])
def test_recently_sent_blocks_are_not_resent_on_request(asked_after, guard, resent):
    transfer, _ = Transfer.start(10, 4).plan_new(100.0)
    _, chosen = transfer.plan_requested(range(10), 100.0 + asked_after, guard)
    assert chosen == resent


def test_guard_follows_each_blocks_own_last_send():
    transfer, _ = Transfer.start(10, 4).plan_new(0.0)             # 0..3 at t=0
    transfer, again = transfer.plan_requested([1], 6.0, 5.0)       # 1 resent at t=6
    assert again == [1]
    _, chosen = transfer.plan_requested(range(4), 8.0, 5.0)        # 0, 2, 3 are old; 1 is recent
    assert chosen == [0, 2, 3]
    assert transfer.sent_at(1) == 6.0 and transfer.sent_at(0) == 0.0 and transfer.sent_at(9) is None


def test_recent_sends_are_bounded_and_survive_the_record():
    transfer = Transfer.start(200, 100)
    transfer, _ = transfer.plan_new(0.0)
    for n in range(50):
        transfer, _ = transfer.plan_requested([2 * n], 10.0 + n, 1.0)
    assert len(transfer.recent) <= 32
    assert Transfer.from_record(transfer.to_record()) == transfer
    transfer, _ = transfer.plan_requested([1], 1000.0, 1.0)        # older than the horizon: forgotten
    assert transfer.recent == ((1, 2, 1000.0),)


# -- acks are believed only for blocks the cloud sent (issue 8, item 4) --------------------------------

@pytest.mark.parametrize(("ack", "expected"), [
    (wire.Ack("x", 1, (1 << 24) - 1), {0, 1, 2, 3}),                  # n far beyond what was sent
    (wire.Ack("x", 1, 2, b"\xff\xff"), {0, 1, 2, 3}),                  # bitmap bits beyond what was sent
    (wire.Ack("x", 1, 0, b"\x0f\xf0"), {0, 1, 2, 3}),                  # only the sent bits of the bitmap
    (wire.Ack("x", 1, 3), {0, 1, 2}),                                  # an honest partial ack
])
def test_acks_for_blocks_never_sent_are_ignored(ack, expected):
    transfer, sent = Transfer.start(100, 4).plan_new(0.0)
    assert sent == [0, 1, 2, 3]
    acked, new = transfer.ack(ack.received(100), 1.0)
    assert {i for i in range(100) if acked.is_acked(i)} == expected and new == len(expected)
    assert acked.acked_count <= acked.next_index and not acked.complete
    _, fresh = acked.plan_new(1.0)
    assert fresh == list(range(4, 4 + len(expected)))  # the cloud still sends the blocks it never sent


@pytest.mark.parametrize("indices", [[10], [11, 12], [(1 << 24) - 1], [-1], [10, 2, 10]])
def test_acks_beyond_block_count_are_ignored(indices):
    transfer, _ = Transfer.start(10, 16).plan_new(0.0)  # all 10 sent
    acked, new = transfer.ack(indices, 1.0)
    assert new == sum(0 <= i < 10 for i in set(indices)) and acked.acked_count == new


@settings(max_examples=100, deadline=None)
@given(total=st.integers(min_value=1, max_value=100), window=st.integers(min_value=1, max_value=16),
       rounds=st.lists(st.sets(st.integers(min_value=-5, max_value=(1 << 24) - 1), max_size=30), max_size=10))
def test_no_ack_lifts_acked_above_sent(total, window, rounds):
    transfer = Transfer.start(total, window)
    for claimed in rounds:
        transfer, _ = transfer.plan_new(0.0)
        transfer, _ = transfer.ack(claimed, 1.0)
        assert transfer.acked_count <= transfer.next_index <= total
        assert 0 <= transfer.in_flight <= window


# -- the first repair is useful: a get 1 s after a send resends ---------------------------------------

@pytest.mark.parametrize(("asked_after", "resent"), [
    (0.1, []),                 # the device's first get, crossing the first window
    (0.49, []),
    (0.5, [0, 1, 2, 3]),       # REQUEST_GUARD_SECONDS
    (1.0, [0, 1, 2, 3]),       # the device's first repair delay
])
def test_a_get_after_the_request_guard_resends(asked_after, resent):
    transfer, _ = Transfer.start(10, 4).plan_new(100.0)
    _, chosen = transfer.plan_requested(range(10), 100.0 + asked_after, REQUEST_GUARD_SECONDS)
    assert chosen == resent


def test_request_guard_is_shorter_than_the_devices_first_repair():
    assert REQUEST_GUARD_SECONDS < 1.0 < ACK_TIMEOUT_SECONDS


# -- fast repair: an ack of a later-sent block proves an earlier one lost ------------------------------

def _two_sends() -> Transfer:
    """Blocks 0..3 sent at t=0, then 4..7 at t=1 (after an ack of 0..3 freed the window)."""
    transfer, _ = Transfer.start(20, 4).plan_new(0.0)
    transfer, _ = transfer.ack([0, 1, 2, 3], 0.5)
    transfer, _ = transfer.plan_new(1.0)
    return transfer


@pytest.mark.parametrize(("acked", "repaired"), [
    ([], []),                    # no evidence
    ([4], []),                   # the lowest of the send: nothing was sent before it
    ([5], [4]),                  # 5 arrived, 4 (sent just before it) did not
    ([4, 7], [5, 6]),
    ([7], [4, 5, 6]),
])
def test_gaps_below_an_acked_later_send_are_resent(acked, repaired):
    transfer, _ = _two_sends().ack(acked, 1.1)
    after, chosen = transfer.plan_gaps(1.1)
    assert chosen == repaired and after.retransmissions == len(repaired)
    _, again = after.plan_gaps(1.2)
    assert again == []  # the same evidence never resends twice


def test_a_gap_from_an_earlier_send_is_proven_by_any_later_send():
    transfer, _ = Transfer.start(20, 8).plan_new(0.0)            # 0..7 at t=0
    transfer, _ = transfer.ack([0, 1, 2, 4, 5, 6, 7], 0.5)       # 3 lost: repaired at once
    transfer, repaired = transfer.plan_gaps(0.5)
    assert repaired == [3]
    transfer, fresh = transfer.plan_new(0.5)
    assert fresh == [8, 9, 10, 11, 12, 13, 14]
    transfer, _ = transfer.ack([8], 1.0)                          # the repair of 3 was lost too
    _, again = transfer.plan_gaps(1.0)
    assert again == []                                            # 8 went out together with 3's repair
    transfer, _ = transfer.plan_new(1.0)
    transfer, _ = transfer.ack([8, 9, 15], 2.0)                   # 15, sent later, arrived
    _, again = transfer.plan_gaps(2.0)
    assert 3 in again and 8 not in again


def test_concurrent_sends_close_together_are_not_taken_for_loss():
    transfer, _ = Transfer.start(20, 4).plan_new(0.0)
    transfer, _ = transfer.ack([0, 1, 2, 3], 0.01)
    transfer, _ = transfer.plan_new(0.01)                         # 4..7, 10 ms later
    transfer, _ = transfer.ack([0, 1, 2, 3], 0.02)
    _, chosen = transfer.plan_gaps(0.02)
    assert chosen == []


def test_a_request_is_guarded_by_when_it_arrived_not_when_it_is_handled():
    # block 3 went out at t=10.0; a `get` the broker received at 10.2 is handled 30 s later (a backlog):
    # the send answered it already, so nothing is resent, and what is resent is stamped with the handling time
    transfer = Transfer.start(10, 8)
    transfer, _ = transfer.plan_new(10.0)
    _, late = transfer.plan_requested([3], 40.0, REQUEST_GUARD_SECONDS, requested_at=10.2)
    assert late == []
    after, old = transfer.plan_requested([3], 40.0, REQUEST_GUARD_SECONDS, requested_at=11.0)
    assert old == [3] and after.sent_at(3) == 40.0


@pytest.mark.parametrize(("heard_at", "resent"), [(0.0, True), (104.0, False)])
def test_a_device_still_heard_from_is_not_resent_its_window(heard_at, resent):
    # sent at 100, nothing acked since; at 106 the sweeper resends, unless the device's messages were being
    # handled until 104 (its acks sit in a backlog: delayed, not lost)
    transfer = Transfer.start(10, 4)
    transfer, _ = transfer.plan_new(100.0)
    transfer = replace(transfer, heard_at=heard_at)
    _, chosen = transfer.plan_overdue(106.0, 5.0)
    assert bool(chosen) is resent
    assert Transfer.from_record(transfer.to_record()) == transfer


@pytest.mark.parametrize(("slack", "repaired"), [(0.05, [0, 1, 2, 3]), (1.0, [])])
def test_a_members_fast_repair_waits_for_broadcasts_far_enough_apart(slack, repaired):
    transfer = Transfer.start(16, 8)
    transfer, _ = transfer.plan_new(10.0, 4)   # blocks 0-3 at 10.0
    transfer, _ = transfer.plan_new(10.3, 4)   # 4-7 at 10.3 (another handler's broadcast, may overtake)
    transfer, _ = transfer.ack(range(4, 8), 10.4)
    _, chosen = transfer.plan_gaps(10.5, None, slack)
    assert chosen == repaired
