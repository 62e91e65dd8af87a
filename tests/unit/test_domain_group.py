"""Group delivery rules (domain/group.py) and a member's transfer (domain/window.py: sync, fall_back)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.domain import group as rules
from chalicelib.domain.models import Execution, Group, Job, Package
from chalicelib.domain.window import Transfer
from otaformat import topics


def job(spec=None, mode="block", blocks=40, window=8) -> Job:
    return Job(job_id="job-1", upload_id="up-1", mode=mode, block_size=256, window=window, stall_seconds=60,
               total_seconds=600, targets=(), target_spec=spec or {"model": "m1"}, state="ACTIVE", created_at=1.0,
               app="demo", app_version="1.0.0", package_size=256 * blocks, package_sha256="a" * 64,
               repository_key="k", block_count=blocks)


def package(models=("m1",)) -> Package:
    return Package(upload_id="up-1", state="AVAILABLE", declared_size=1, created_at=1.0, models=models)


def execution(transfer=None) -> Execution:
    return Execution(execution_id="ex-1", job_id="job-1", epn="dev-1", state="IN_PROGRESS", stream=5, mode="block",
                     created_at=1.0, last_activity=1.0, transfer=transfer)


@pytest.mark.parametrize(("case", "j", "p", "model"), [
    ("model job", job(), package(), "m1"),
    ("two devices", job({"devices": ["a", "b"]}), package(), "m1"),
    ("one device", job({"devices": ["a"]}), package(), None),
    ("url mode", job(mode="url"), package(), None),
    ("two-model package", job(), package(("m1", "m2")), None),
])
def test_who_is_offered_a_group(case, j, p, model):
    assert rules.group_model(j, p) == model, case
    offered = rules.offered(j, p, execution())
    assert (offered is None) == (model is None)
    if offered is not None:
        assert offered.topic == topics.group_block_topic("m1", "job-1") == "ota/g/m1/job-1/blk"
        assert offered.stream == rules.group_stream("job-1", "m1")


def test_a_member_that_fell_back_is_offered_no_group_again():
    fallen = Transfer.start(40, 8)
    fallen = replace(fallen, member=True).fall_back()
    assert rules.offered(job(), package(), execution(fallen)) is None


def member(acked=(), next_index=0, total=40, window=8) -> Transfer:
    transfer = replace(Transfer.start(total, window), member=True, next_index=next_index)
    transfer, _ = transfer.ack(acked, 1.0)
    return transfer


def group(next_index=0, total=40, window=8) -> Group:
    return replace(rules.new_group(job(blocks=total, window=window), "m1", 1.0), next_index=next_index)


@pytest.mark.parametrize(("g_next", "acked", "expected"), [
    (0, (), list(range(0, 8))),  # the first member starts the group: a whole window
    (8, range(0, 4), list(range(8, 12))),  # half a window acked: room for 4
    (8, range(0, 3), []),  # 5 in flight > window/2: wait
    (40, range(0, 40), []),  # everything broadcast
])
def test_the_group_advances_by_the_room_a_members_ack_made(g_next, acked, expected):
    g = group(g_next)
    t = member(acked, next_index=g_next)
    moved, blocks = rules.advance(g, t, 2.0)
    assert blocks == expected
    if blocks:
        assert moved.next_index == blocks[-1] + 1 and moved.version == g.version + 1
        assert moved.recent[-1] == (blocks[0], blocks[-1] + 1, 2.0) and moved.broadcasts == len(blocks)
    else:
        assert moved == g


def test_a_non_member_never_advances_the_group():
    assert rules.advance(group(8), replace(member(range(8), 8), member=False), 2.0) == (group(8), [])


def test_sync_counts_broadcast_blocks_as_sent_to_a_member_only():
    g = replace(group(), next_index=16, recent=((0, 8, 1.0), (8, 16, 2.0)))
    synced = member().sync(g.next_index, g.recent)
    assert synced.next_index == 16 and synced.sent_count == 16 and synced.last_send_at == 2.0
    assert synced.sent_at(12) == 2.0
    _, new = synced.ack(range(16), 3.0)
    assert new == 16  # acks of broadcast blocks are believed
    outsider = Transfer.start(40, 8)
    assert outsider.sync(16, g.recent) is outsider
    assert outsider.ack(range(16), 3.0)[1] == 0  # a non-member's acks of blocks never sent to it are not


@pytest.mark.parametrize(("cursor", "acked", "repaired", "falls"), [
    (32, 0, 0, False),  # 4 windows behind: still a member
    (33, 0, 0, True),  # more than 4 windows behind
    (32, 32, 16, False),  # 2 windows of repairs: still a member
    (32, 32, 17, True),  # more than 2 windows, and more than 1/8 of what it acknowledged
    (200, 200, 17, False),  # more than 2 windows, but under 1/8 of a long transfer's acknowledged blocks
    (200, 200, 26, True),
])
def test_a_member_falls_back_when_it_lags_four_windows_or_needs_too_many_repairs(cursor, acked, repaired, falls):
    g = group(next_index=cursor, total=400)
    t = replace(member(range(acked), next_index=cursor, total=400), retransmissions=repaired)
    assert rules.must_fall_back(g, t) is falls


def test_falling_back_restarts_the_unicast_window_at_the_first_hole():
    t = member(acked=[0, 1, 2, 5, 6], next_index=24)
    unicast = t.fall_back()
    assert unicast.unicast and not unicast.member and unicast.next_index == 3
    unicast, fresh = unicast.plan_new(5.0)
    assert fresh == [3, 4, 7, 8, 9, 10]  # the window from the first hole; acked blocks are never sent again


# The two clocks (docs/protocol.md 15.3): broadcasts are stamped when the cloud sends them, a device's
# message with when the broker received it. A backlog of device messages (acks handled late, not lost)
# must not move members to unicast; a member that really missed the broadcast still falls back.
RUNS = ((0, 8, 10.0), (8, 16, 11.0), (16, 24, 12.0), (24, 32, 13.0), (32, 40, 14.0))


@pytest.mark.parametrize(("case", "at", "expected"), [
    ("before any broadcast", 9.0, 0),
    ("after the first", 10.0, 8),
    ("between", 12.5, 24),
    ("after all", 99.0, 40),
])
def test_blocks_broadcast_before_a_time(case, at, expected):
    g = replace(group(next_index=40, total=40), recent=RUNS)
    assert rules.broadcast_before(g, at) == expected, case


def test_nothing_remembered_means_everything_was_broadcast_long_ago():
    assert rules.broadcast_before(group(next_index=24, total=40), 0.0) == 24


@pytest.mark.parametrize(("case", "seen_at", "acked", "falls"), [
    # window 2, 4W = 8: the cursor (40) is far ahead of what the member acked (8)
    ("its message predates the broadcast: a backlog, not a lag", 11.5, 8, False),
    ("sent after 24 blocks had been broadcast, 8 acked: 16 behind", 14.5, 8, True),
    ("sent after everything, all acked", 99.0, 40, False),
    ("no broker time: the whole cursor counts", None, 8, True),
])
def test_lag_counts_only_blocks_broadcast_before_the_broker_received_the_message(case, seen_at, acked, falls):
    g = replace(group(next_index=40, total=40, window=2), recent=RUNS)
    t = member(range(acked), next_index=40, total=40, window=2)
    assert rules.must_fall_back(g, t, seen_at) is falls, case


def test_a_late_handler_never_stamps_a_broadcast_before_an_earlier_one():
    g = replace(group(next_index=16), recent=((0, 8, 10.0), (8, 16, 12.0)))
    moved, blocks = rules.advance(g, member(range(16), next_index=16), 11.0)  # this handler's clock is behind
    assert blocks == list(range(16, 24)) and moved.recent[-1] == (16, 24, 12.0)
