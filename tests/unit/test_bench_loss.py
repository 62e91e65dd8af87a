"""bench.loss's injector drops exactly what it says: a seeded share of the indices of each stream, on
their first arrival only (the benchmark's figure means nothing otherwise). No timing here."""

from __future__ import annotations

import pytest

from bench.loss import FirstArrivalLoss, frame_key, lossy
from otaformat import wire


def test_the_doomed_set_is_deterministic_and_near_the_rate():
    one, two = FirstArrivalLoss(0.1, 8), FirstArrivalLoss(0.1, 8)
    doomed = [i for i in range(10_000) if one.doomed(42, i)]
    assert doomed == [i for i in range(10_000) if two.doomed(42, i)]
    assert 900 <= len(doomed) <= 1100
    assert doomed != [i for i in range(10_000) if FirstArrivalLoss(0.1, 9).doomed(42, i)]  # the seed matters
    assert doomed != [i for i in range(10_000) if one.doomed(43, i)]  # each stream has its own losses


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_the_rate_bounds(rate):
    loss = FirstArrivalLoss(rate, 1)
    assert sum(loss.drops(7, i) for i in range(1000)) == 1000 * rate


def test_only_the_first_arrival_is_dropped_whatever_the_order():
    loss = FirstArrivalLoss(0.1, 8)
    order = list(range(500))[::-1]
    first = [i for i in order if loss.drops(5, i)]
    assert sorted(first) == [i for i in range(500) if FirstArrivalLoss(0.1, 8).doomed(5, i)]
    assert [i for i in order if loss.drops(5, i)] == []  # repairs and duplicates all pass


def test_the_agent_wrapper_drops_frames_and_reports_repairs():
    loss = FirstArrivalLoss(0.1, 8)
    got: list[int | None] = []
    events: list[tuple[str, int, int]] = []
    handler = lossy(lambda _agent, payload: got.append((frame_key(payload) or (0, None))[1]), loss,
                    lambda e, s, i: events.append((e, s, i)))
    frames = [wire.encode_frame(9, i, 200, b"x") for i in range(200)]
    for frame in frames:
        handler(None, frame)
    doomed = [i for i in range(200) if loss.doomed(9, i)]
    assert doomed and got == [i for i in range(200) if i not in doomed]
    for i in doomed:  # the repaired copies pass and are reported once
        handler(None, frames[i])
        handler(None, frames[i])
    assert got[-2 * len(doomed):] == [i for i in doomed for _ in range(2)]
    assert events == [("dropped", 9, i) for i in doomed] + [("repaired", 9, i) for i in doomed]
    handler(None, b"short")  # not a frame: passed on untouched (the agent drops it itself)
    assert got[-1] is None
