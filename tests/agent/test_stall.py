"""The stall budget in real time, with the agent's own run loop: a URL server that never answers or
trickles bytes cannot hold the agent past its budget, and the agent then takes the next job."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from agent.runtime import Agent
from agent.transport import Message
from otaformat import messages, wire

from .conftest import NOW, FakeTransport
from .httpfakes import RawServer, head
from .pkgtools import build_package, frames, job_for

BUDGET = 1.0
WAIT = 20.0  # generous bound for a loaded machine; the tests normally finish in about 2 * BUDGET


class WatchedTransport(FakeTransport):
    """FakeTransport whose publications can be waited for (a condition, not a sleep)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def publish(self, topic_name: str, payload: bytes, *, wait: float = 0.0) -> bool:
        with self.changed:
            ok = super().publish(topic_name, payload, wait=wait)
            self.changed.notify_all()
        return ok

    def wait_for(self, predicate: Callable[[], object], timeout: float = WAIT) -> bool:
        with self.changed:
            return bool(self.changed.wait_for(predicate, timeout))


@pytest.fixture
def running(config) -> Iterator[tuple[Agent, WatchedTransport]]:
    transport = WatchedTransport()
    agent = Agent(replace(config, stall_budget=BUDGET), transport, wall=lambda: NOW)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    yield agent, transport
    agent.stop_event.set()
    thread.join(WAIT)
    assert not thread.is_alive()


def silent(server, conn, start, end):  # accepts, reads the request, never answers
    server.stopped.wait()


def trickle(server, conn, start, end):  # a valid head, then one byte at a time, too slowly to finish
    server.send(conn, head("206 Partial Content", Content_Length=end - start + 1))
    while not server.stopped.wait(0.05):
        server.send(conn, b"x")


@pytest.mark.parametrize("answer", [silent, trickle], ids=["silent", "trickle"])
def test_url_server_that_never_finishes_hits_the_stall_budget(running, publisher, answer):
    agent, transport = running
    package, envelope = build_package(publisher[0], files={"bin/app": os.urandom(20_000)})
    server = RawServer(answer)
    try:
        job = job_for(package, envelope, mode="url", url=server.url)
        agent.post(Message("job", messages.encode(job)))
        assert transport.wait_for(transport.terminal), "the stall budget never fired"
        (final,) = transport.terminal()
        assert final.execution_id == job.execution_id and final.state == "FAILED"
        assert final.reason and final.reason.startswith(f"download stalled: no new data for {BUDGET:g} s")
    finally:
        server.close()
    following = job_for(package, envelope, block_size=1024)  # block mode: the agent takes the next job
    agent.post(Message("job", messages.encode(following)))
    assert transport.wait_for(lambda: transport.leaf("get"))
    for frame in frames(following, package):
        agent.post(Message("blk", frame))
    assert transport.wait_for(lambda: len(transport.terminal()) == 2)
    assert [(s.execution_id, s.state) for s in transport.terminal()][-1] == (following.execution_id, "SUCCEEDED")
    asked = wire.decode_request(transport.leaf("get")[0]).wanted(following.block_count)
    assert asked == list(range(following.block_count))
