"""The ack policy under paced arrival (docs/protocol.md section 7, `pace_ms`): blocks come in bursts about
a second apart; with the job's pace the idle timer no longer fires between bursts, without it (an old
cloud, or pace_ms absent) it does, once per burst, as before. Simulated time, no waiting."""

from __future__ import annotations

import pytest

from agent.acks import IDLE_SECONDS, AckPolicy, paced_idle, paced_repair


@pytest.mark.parametrize(("configured", "pace_ms", "idle"), [
    (0.05, 0, 0.05),  # not paced: the configured timer
    (0.05, 1000, 1.5),  # paced: a pause between two bursts is not a sender waiting for an ack
    (2.0, 1000, 2.0),  # a longer configured timer stays
])
def test_paced_idle(configured, pace_ms, idle):
    assert paced_idle(configured, pace_ms) == pytest.approx(idle)


@pytest.mark.parametrize(("configured", "pace_ms", "interval"), [(1.0, 0, 1.0), (1.0, 1000, 1.5), (3.0, 1000, 3.0)])
def test_paced_repair(configured, pace_ms, interval):
    assert paced_repair(configured, pace_ms) == pytest.approx(interval)


def acks_for_paced_arrival(pace_ms: int, *, blocks: int = 1024, burst: int = 15, period: float = 1.05,
                           window: int = 64, spacing: float = 0.002, step: float = 0.01) -> int:
    """Acks the policy sends while `blocks` arrive in bursts of `burst` every `period` seconds."""
    policy = AckPolicy(window, idle=paced_idle(IDLE_SECONDS, pace_ms))
    arrivals = [(b // burst) * period + (b % burst) * spacing for b in range(blocks)]
    acks, now, index = 0, 0.0, 0
    while index < blocks:
        while index < blocks and arrivals[index] <= now:
            if policy.on_block(arrivals[index], new=True, complete=index == blocks - 1):
                policy.acked()
                acks += 1
            index += 1
        if policy.idle_due(now):
            policy.acked()
            acks += 1
        now += step
    return acks


@pytest.mark.parametrize(("pace_ms", "most_per_block", "least_per_block"), [
    (1000, 0.05, 0.0),  # paced job: about one ack per half window (2/64)
    (0, 1.0, 1 / 15),  # no pace in the document: the 50 ms timer fires after every burst, as before
])
def test_acks_per_block_under_paced_arrival(pace_ms, most_per_block, least_per_block):
    blocks = 1024
    per_block = acks_for_paced_arrival(pace_ms, blocks=blocks) / blocks
    assert least_per_block <= per_block <= most_per_block
