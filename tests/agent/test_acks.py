"""Ack policy: table-driven unit tests and a scripted sliding-window sender measuring acks per block."""

from __future__ import annotations

import os

import pytest

from agent.acks import AckPolicy
from otaformat import wire

from .pkgtools import build_package, frames, job_for


@pytest.mark.parametrize(
    ("window", "events", "due"),
    [
        (64, [(0.0, True, False)] * 31, [False] * 31),
        (64, [(0.0, True, False)] * 32, [False] * 31 + [True]),
        (1, [(0.0, True, False)], [True]),
        (64, [(0.0, True, True)], [True]),  # completion always acks
        (64, [(0.0, False, False)] * 40, [False] * 40),  # duplicates never reach the threshold
    ],
)
def test_threshold(window, events, due):
    policy = AckPolicy(window)
    assert [policy.on_block(t, new=n, complete=c) for t, n, c in events] == due


@pytest.mark.parametrize(("new", "at", "fires"), [(True, 0.049, False), (True, 0.05, True), (False, 0.05, True)])
def test_idle_timer(new, at, fires):
    policy = AckPolicy(64, idle=0.05)
    assert policy.due_at() is None
    policy.on_block(0.0, new=new, complete=False)
    assert policy.idle_due(at) is fires
    policy.acked()
    assert policy.due_at() is None


def sliding_window_transfer(harness, job, package, drop=frozenset()):
    """Send like the cloud does: at most `window` unacked blocks in flight, more on every ack,
    resend on `get`. Returns (blocks sent, acks received)."""
    fs = frames(job, package)
    acked: set[int] = set()
    in_flight: set[int] = set()
    queue = list(range(job.block_count))
    sent = seen_acks = 0
    seen_gets = len(harness.transport.leaf("get"))  # the first get (all blocks) is the start signal
    dropped = set(drop)
    for _ in range(100000):
        if harness.agent.state != "DOWNLOADING":
            break
        while queue and len(in_flight) < job.window:
            i = queue.pop(0)
            in_flight.add(i)
            sent += 1
            if i in dropped:
                dropped.discard(i)
                continue
            harness.send("blk", fs[i])
        acks = harness.transport.leaf("ack")
        for payload in acks[seen_acks:]:
            got = wire.decode_ack(payload).received(job.block_count)
            acked |= got
            in_flight -= got
        seen_acks = len(acks)
        gets = harness.transport.leaf("get")
        for payload in gets[seen_gets:]:
            for i in wire.decode_request(payload).wanted(job.block_count):
                if i not in acked and i not in queue:
                    in_flight.discard(i)
                    queue.append(i)
        seen_gets = len(gets)
        if not queue or len(in_flight) >= job.window:
            harness.idle(0.06)  # no traffic: the agent's idle timer (and later its repair request) fires
    return sent, len(harness.transport.leaf("ack"))


@pytest.mark.parametrize("window", [16, 64])
def test_acks_per_block_at_most_a_tenth_at_window_64(harness, publisher, window):
    key, _ = publisher
    package, envelope = build_package(key, files={"bin/app": os.urandom(1024 * 1000)})
    job = job_for(package, envelope, block_size=1024, window=window)
    harness.job(job)
    sent, acks = sliding_window_transfer(harness, job, package)
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]
    ratio = acks / job.block_count
    print(f"window {window}: {job.block_count} blocks, {sent} sent, {acks} acks, {ratio:.3f} acks/block")
    assert ratio <= (0.1 if window == 64 else 0.2)


def test_lost_blocks_are_requested_again(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key, files={"bin/app": os.urandom(200 * 512)})
    job = job_for(package, envelope, block_size=512, window=32)
    harness.job(job)
    sent, _ = sliding_window_transfer(harness, job, package, drop={3, 50, 51, job.block_count - 1})
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]
    assert sent == job.block_count + 4
