"""Issue 8 (items 4 and 5), through the real device-message and sweep handlers on moto: acks for blocks
never sent, SUCCEEDED before any block, URL-mode progress, a useful first repair, fast repair."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.schedules import sweep
from otaformat import messages, wire

from .fakes import scheduled_event
from .flows import publish, register_device, send


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


def start_job(api, world, key, mode="block"):
    """dev-1 and a job of a ~10 KB package (10,000 bytes of payload) in 1 KiB blocks (11 blocks), window 4."""
    upload_id = publish(api, world, key, app="demo", version="1.1.0", size=10000)
    register_device(api, "dev-1")
    job = api.call("POST", "/jobs", {"package_id": upload_id, "targets": {"devices": ["dev-1"]}, "mode": mode,
                                     "block_size": 1024, "window": 4,
                                     "timeouts": {"stall_seconds": 60, "total_seconds": 3600}}).json
    [doc] = world.publisher.job_documents("dev-1")
    world.publisher.clear()
    return job, doc


class Device:
    def __init__(self, api, world, job, doc):
        self.api, self.world, self.job, self.doc = api, world, job, doc
        self.seq = 0
        self.seen = 0

    def send(self, leaf, payload):
        return send(("dev-1", leaf, payload), received_ms=int(self.world.clock.now * 1000))

    def status(self, state, step=None, progress=None):
        self.seq += 1
        return self.send("status", messages.encode(
            messages.Status(self.doc.execution_id, state, step, None, self.seq, progress)))

    def ack(self, ack):
        return self.send("ack", wire.encode_ack(ack))

    def ack_blocks(self, indices):
        return self.ack(wire.make_ack(self.doc.execution_id, self.doc.stream, indices, self.doc.block_count))

    def get(self, indices):
        return self.send("get", wire.encode_request(wire.make_request(self.doc.execution_id, self.doc.stream,
                                                                      indices)))

    def new_frames(self):
        frames = self.world.publisher.frames("dev-1")
        fresh, self.seen = frames[self.seen:], len(frames)
        return sorted(f.index for f in fresh)

    def view(self):
        return self.api.call("GET", f"/jobs/{self.job['job_id']}/executions/dev-1").json

    def job_view(self):
        return self.api.call("GET", f"/jobs/{self.job['job_id']}").json


@pytest.fixture
def block_device(api, world, key):
    return Device(api, world, *start_job(api, world, key))


@pytest.fixture
def url_device(api, world, key):
    return Device(api, world, *start_job(api, world, key, mode="url"))


# -- item 4: acks for blocks never sent ------------------------------------------------------------------

@pytest.mark.parametrize(("make", "believed"), [
    (lambda x, s: wire.Ack(x, s, (1 << 24) - 1), 4),                   # n = 2^24-1
    (lambda x, s: wire.Ack(x, s, 0, b"\xff\xff"), 4),                  # bitmap bits beyond the 4 sent
    (lambda x, s: wire.Ack(x, s, 11), 4),                              # n = block_count, 4 sent
    (lambda x, s: wire.Ack(x, s, 2, b"\x00\x00\xff"), 2),              # bits beyond block_count
])
def test_acks_for_blocks_never_sent_are_not_believed(block_device, make, believed):
    d = block_device
    d.status("IN_PROGRESS", "DOWNLOADING")
    assert d.new_frames() == [0, 1, 2, 3]
    d.ack(make(d.doc.execution_id, d.doc.stream))
    shown = d.view()
    assert shown["blocks_acked"] == believed <= shown["blocks_sent"]
    assert shown["percent"] < 100.0 and d.job_view()["bytes_done"] == shown["bytes_done"] == believed * 1024
    # the blocks the device claimed but never got are still sent
    assert d.new_frames() == list(range(4, 4 + believed))


# -- item 5: SUCCEEDED before any block (block mode) -----------------------------------------------------

def test_success_before_any_block_is_recorded_flagged_and_shows_no_progress(block_device):
    d = block_device
    d.status("SUCCEEDED")
    shown, job = d.view(), d.job_view()
    assert shown["state"] == "SUCCEEDED" and shown["blocks_acked"] == 0 and shown["percent"] == 0.0
    assert "0 of 11 blocks acknowledged" in shown["note"]
    assert job["bytes_done"] == 0 and job["percent"] == 0.0 and job["counts"]["SUCCEEDED"] == 1
    d.status("FAILED")  # terminal stays sticky
    assert d.view()["state"] == "SUCCEEDED"


def test_verifying_before_the_blocks_shows_only_what_was_acked(block_device):
    d = block_device
    d.status("IN_PROGRESS", "DOWNLOADING")
    d.ack_blocks({0, 1})
    d.status("IN_PROGRESS", "VERIFYING", progress=11)
    assert d.view()["blocks_acked"] == 2 and d.job_view()["bytes_done"] == 2048


def test_an_honest_success_whose_last_ack_lands_late_is_completed_and_unflagged(block_device):
    d = block_device
    d.status("IN_PROGRESS", "DOWNLOADING")
    held: set[int] = set()
    while len(held) < 11:
        new = d.new_frames()
        assert new
        held |= set(new)
        if len(held) < 11:
            d.ack_blocks(held)
    d.status("SUCCEEDED")  # processed before the final ack (SQS does not keep the order of topics)
    early = d.view()
    assert early["state"] == "SUCCEEDED" and early["note"] and early["blocks_acked"] < 11
    d.ack_blocks(held)
    late = d.view()
    assert late["state"] == "SUCCEEDED" and late["note"] is None and late["percent"] == 100.0
    assert d.new_frames() == []  # nothing is ever sent after the terminal state


# -- URL-mode progress -------------------------------------------------------------------------------------

def test_url_mode_progress_is_shown_bounded_and_monotonic(url_device):
    d = url_device
    seen = []
    for state, step, progress in [("IN_PROGRESS", "DOWNLOADING", 0), ("IN_PROGRESS", "DOWNLOADING", 3),
                                  ("IN_PROGRESS", "DOWNLOADING", 2), ("IN_PROGRESS", "DOWNLOADING", 7),
                                  ("IN_PROGRESS", "VERIFYING", None), ("SUCCEEDED", None, None)]:
        d.status(state, step, progress)
        shown = d.view()
        seen.append((shown["blocks_acked"], shown["bytes_done"], d.job_view()["bytes_done"]))
    assert [s[0] for s in seen] == [0, 3, 3, 7, 11, 11]
    size = d.doc.package_size
    assert [s[1] for s in seen] == [0, 3072, 3072, 7168, size, size]
    assert all(s[1] == s[2] for s in seen)
    timeline = [(t["state"], t["step"]) for t in d.view()["timeline"]]
    assert timeline.count(("IN_PROGRESS", "DOWNLOADING")) == 1  # progress reports add no timeline entry


def test_url_mode_progress_beyond_the_package_is_bounded(url_device):
    d = url_device
    d.status("IN_PROGRESS", "DOWNLOADING", 5000)
    shown = d.view()
    assert shown["blocks_acked"] == 11 and shown["bytes_done"] == d.doc.package_size and shown["percent"] == 100.0


# -- the first repair is useful -----------------------------------------------------------------------------

def test_a_get_one_second_after_a_send_resends(block_device, world):
    d = block_device
    d.status("IN_PROGRESS", "DOWNLOADING")
    assert d.new_frames() == [0, 1, 2, 3]            # all lost on the way
    world.clock.advance(0.2)
    d.get(range(11))                                 # the device's first get, crossing the first window
    assert d.new_frames() == []
    world.clock.advance(0.8)
    d.get(range(11))                                 # its first repair, 1 s after the send
    assert d.new_frames() == [0, 1, 2, 3]
    assert d.view()["retransmissions"] == 4


def test_an_ack_with_a_hole_repairs_it_at_once(block_device, world):
    d = block_device
    d.status("IN_PROGRESS", "DOWNLOADING")
    assert d.new_frames() == [0, 1, 2, 3]
    world.clock.advance(0.05)
    d.ack_blocks({0, 1, 3})                          # 2 was lost: 3, sent after it, arrived
    assert d.new_frames() == [2, 4, 5, 6]


def test_the_sweeper_does_not_repeat_a_repair_within_the_ack_timeout(block_device, world):
    d = block_device
    d.status("IN_PROGRESS", "DOWNLOADING")
    d.new_frames()
    world.clock.advance(1.0)
    d.get(range(11))
    assert d.new_frames() == [0, 1, 2, 3]
    world.clock.advance(4.0)
    assert sweep(scheduled_event(), None)["resent_blocks"] == 0   # 4 s after the repair
    world.clock.advance(1.5)
    assert sweep(scheduled_event(), None)["resent_blocks"] == 4   # overdue: the sweeper resends
