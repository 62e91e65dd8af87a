"""Crash at every checkpoint (in process: the crash hook raises) and restart on the same data_dir.

After the restart the old version is intact or the new one committed, and the reported outcome
matches what is on disk. The same checkpoints are exercised with a real SIGKILL in test_e2e_mqtt.
"""

from __future__ import annotations

import os

import pytest

from agent.machine import CHECKPOINTS
from agent.runtime import Agent
from otaformat import wire

from .conftest import NOW, FakeTransport
from .pkgtools import build_package, frames, job_for


class SimulatedCrash(BaseException):
    pass


def crash_at(point: str):
    def hook(name: str) -> None:
        if name == point:
            raise SimulatedCrash(point)
    return hook


def current(h):
    link = os.path.join(h.config.install_root, "demo", "current")
    return os.readlink(link) if os.path.islink(link) else None


# checkpoint -> (version active after restart, reported terminal state)
EXPECTED = {
    "block-written": ("2.0.0", "SUCCEEDED"),
    "verified": ("2.0.0", "SUCCEEDED"),
    "mid-install": ("1.0.0", "FAILED"),
    "before-commit": ("2.0.0", "SUCCEEDED"),
    "after-commit": ("2.0.0", "SUCCEEDED"),
}


def test_every_checkpoint_has_an_expectation():
    assert set(EXPECTED) == set(CHECKPOINTS)


@pytest.mark.parametrize("point", CHECKPOINTS)
def test_crash_and_resume(harness, publisher, point):
    key, _ = publisher
    old, old_env = build_package(key, version="1.0.0")
    job0 = job_for(old, old_env)
    harness.job(job0)
    for f in frames(job0, old):
        harness.send("blk", f)
    assert current(harness) == "1.0.0"

    package, envelope = build_package(key, version="2.0.0", files={"bin/app": os.urandom(6000)})
    job = job_for(package, envelope, block_size=512)
    harness.agent = Agent(harness.config, harness.transport, clock=harness.clock, wall=lambda: NOW,
                          crash=crash_at(point))
    harness.agent.start()
    fs = frames(job, package)
    crashed = False
    try:
        harness.job(job)
        for f in fs:
            harness.send("blk", f)
    except SimulatedCrash:
        crashed = True
    assert crashed
    harness.transport.sent.clear()
    harness.fresh()  # restart on the same data_dir, no crash hook
    if harness.agent.state == "DOWNLOADING":
        harness.agent.on_connected()  # the transport reconnects: inventory, then a get for what is missing
        missing = wire.decode_request(harness.transport.leaf("get")[-1]).wanted(job.block_count)
        assert missing == harness.agent.spool.missing() == list(range(job.block_count))
        for i in missing:
            harness.send("blk", fs[i])
    version, state = EXPECTED[point]
    assert current(harness) == version
    assert [s.state for s in harness.transport.terminal()] == [state]
    assert harness.agent.store.data["apps"]["demo"] == version
    assert harness.agent.state == "IDLE"
    with open(os.path.join(harness.config.data_dir, "history.txt")) as f:
        history = f.read().splitlines()
    # one line per attempt: the committed ones SUCCEEDED, an interrupted install ROLLED_BACK
    assert [line.split()[1:4] for line in history] == [["demo", "1.0.0", "SUCCEEDED"]] + (
        [["demo", "2.0.0", "SUCCEEDED"]] if version == "2.0.0" else [["demo", "2.0.0", "ROLLED_BACK"]])


def test_crash_after_block_write_requests_only_missing(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key, files={"bin/app": os.urandom(8000)})
    job = job_for(package, envelope, block_size=256, window=8)
    harness.job(job)
    fs = frames(job, package)
    for f in fs[:10]:
        harness.send("blk", f)  # window 8: blocks 0..7 acked (durable), 8..9 maybe not yet
    harness.agent.spool.close()
    harness.transport.sent.clear()
    harness.fresh()
    harness.agent.on_connected()
    wanted = wire.decode_request(harness.transport.leaf("get")[-1]).wanted(job.block_count)
    assert wanted[0] >= 8 and wanted[-1] == job.block_count - 1
    assert set(range(8)).isdisjoint(wanted)


class CrashOnFinalAck(FakeTransport):
    """Dies (as a power cut would) right after the last block is durable, before the download is left."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total

    def publish(self, topic_name: str, payload: bytes, *, wait: float = 0.0) -> bool:
        if topic_name.endswith("/ack") and wire.decode_ack(payload).contiguous >= self.total:
            raise SimulatedCrash("after the final block was made durable")
        return super().publish(topic_name, payload, wait=wait)


def test_a_download_found_complete_on_resume_is_acknowledged_before_verification(harness, publisher):
    """The cloud counts only acknowledged blocks: a device that resumes with every block says so first."""
    key, _ = publisher
    package, envelope = build_package(key, version="2.0.0", files={"bin/app": os.urandom(6000)})
    job = job_for(package, envelope, block_size=512, window=4)
    dying = CrashOnFinalAck(job.block_count)
    harness.agent = Agent(harness.config, dying, clock=harness.clock, wall=lambda: NOW)
    harness.agent.start()
    harness.job(job)
    with pytest.raises(SimulatedCrash):
        for f in frames(job, package):
            harness.send("blk", f)
    harness.transport.sent.clear()
    harness.fresh()  # restart on the same data_dir with a transport that works
    acks = [wire.decode_ack(p) for p in harness.transport.leaf("ack")]
    assert acks and acks[0].received(job.block_count) == set(range(job.block_count))
    first_ack = next(i for i, (t, _) in enumerate(harness.transport.sent) if t.endswith("/ack"))
    verifying = next(i for i, (t, p) in enumerate(harness.transport.sent) if t.endswith("/status")
                     and b"VERIFYING" in p)
    assert first_ack < verifying
    assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]
