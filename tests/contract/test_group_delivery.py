"""Group delivery (docs/protocol.md section 15) on both repositories: simulated devices take a job through
the device-message service, and the publishes are counted per topic.

The devices here are a few lines of Python that follow the protocol (hold what arrives, ack what they
hold with `g`, ask for what they lack after a quiet second); frames they "lose" are chosen per test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chalicelib.domain import executions as ex
from chalicelib.domain import group as rules
from chalicelib.domain.models import Execution, Package
from chalicelib.services.device_messages import DeviceMessage, HotCache, handle_batch
from otaformat import messages, topics, wire

from .test_repository_contract import BlockStorage, Sink, job

MODEL = "model-a"


def package() -> Package:
    return Package(upload_id="up-1", state="AVAILABLE", declared_size=1, created_at=1.0, app="demo",
                   version_label="1.1.0", models=(MODEL,), envelope={})


@dataclass
class Device:
    epn: str
    eid: str
    stream: int
    total: int
    legacy: bool = False  # an agent without group support: never sends `g`, never follows the group
    following: bool = True
    lose: set[int] = field(default_factory=set)  # group frames of these indices never reach it (once)
    held: set[int] = field(default_factory=set)
    fresh: bool = False

    def g(self, group: int) -> int | None:
        return group if self.following and not self.legacy else None

    def take(self, index: int) -> None:
        if index not in self.held:
            self.held.add(index)
            self.fresh = True


class World:
    def __init__(self, repo, n: int, blocks: int, window: int, legacy: int = 0,
                 backlog: dict[str, int] | None = None) -> None:
        self.repo, self.sink, self.cache, self.now = repo, Sink(), HotCache(), 1.0
        self.backlog = backlog or {}  # EPN -> how many batches later its messages are handled (a queue backlog)
        self.queued: list[tuple[int, DeviceMessage]] = []
        self.batches = 0
        spec_job = job(blocks=blocks)
        self.job = type(spec_job)(**{**spec_job.__dict__, "window": window, "target_spec": {"model": MODEL},
                                     "targets": tuple(f"dev-{i}" for i in range(n))})
        repo.create_package(package())
        self.devices = [Device(f"dev-{i}", f"ex-{i}", 100 + i, blocks, legacy=i < legacy) for i in range(n)]
        repo.create_job(self.job, [Execution(execution_id=d.eid, job_id="job-1", epn=d.epn, state=ex.QUEUED,
                                             stream=d.stream, mode="block", created_at=1.0, last_activity=1.0)
                                   for d in self.devices])
        self.group = rules.group_stream("job-1", MODEL)
        self.topic = topics.group_block_topic(MODEL, "job-1")
        self.seen = 0
        self.seq = 1

    def batch(self, items: list[DeviceMessage]) -> None:
        """Handle the messages now, except those of backlogged devices: they keep their broker time and
        are handled some batches later. The handler's clock is the world's."""
        self.batches += 1
        self.queued += [(self.batches + self.backlog.get(m.epn, 0), m) for m in items]
        ready = [m for due, m in self.queued if due <= self.batches]
        self.queued = [(due, m) for due, m in self.queued if due > self.batches]
        if ready:
            handle_batch(self.repo, BlockStorage(), self.sink, ready, self.cache, clock=lambda: self.now)

    def start(self) -> None:
        items = []
        for d in self.devices:
            status = messages.Status(d.eid, "IN_PROGRESS", "DOWNLOADING", None, self.seq, 0, d.g(self.group))
            items.append(DeviceMessage(d.epn, "status", messages.encode(status), self.now))
            get = wire.make_request(d.eid, d.stream, range(d.total), group=d.g(self.group))
            items.append(DeviceMessage(d.epn, "get", wire.encode_request(get), self.now))
        self.batch(items)

    def deliver(self) -> int:
        """Hand every new publish to the devices it reaches; returns how many frames went out."""
        new = self.sink.sent[self.seen:]
        self.seen = len(self.sink.sent)
        for topic, payload in new:
            if topic == self.topic:
                frame = wire.decode_frame(payload)
                for d in self.devices:
                    if d.following and not d.legacy and frame.stream == self.group:
                        if frame.index in d.lose:
                            d.lose.discard(frame.index)
                        else:
                            d.take(frame.index)
            elif topic.endswith("/blk"):
                epn = topic.split("/")[1]
                d = next(x for x in self.devices if x.epn == epn)
                frame = wire.decode_frame(payload)
                if frame.stream == d.stream:
                    d.take(frame.index)
            elif topic.endswith("/job"):
                doc = messages.decode(payload)
                d = next(x for x in self.devices if x.epn == topic.split("/")[1])
                if isinstance(doc, messages.JobDocument) and doc.group is None:
                    d.following = False  # the cloud moved it to unicast: it leaves the group
        return sum(1 for t, _ in new if t.endswith("/blk"))

    def step(self) -> bool:
        """One exchange: devices with new blocks ack; quiet ones ask for what they lack. False when done."""
        self.now += 0.1
        items = []
        for d in self.devices:
            if d.fresh:
                d.fresh = False
                ack = wire.make_ack(d.eid, d.stream, d.held, d.total, group=d.g(self.group))
                items.append(DeviceMessage(d.epn, "ack", wire.encode_ack(ack), self.now))
        if not items:
            self.now += 1.0
            for d in self.devices:
                if len(d.held) < d.total:
                    get = wire.make_request(d.eid, d.stream, set(range(d.total)) - d.held, group=d.g(self.group))
                    items.append(DeviceMessage(d.epn, "get", wire.encode_request(get), self.now))
        if not items and not self.queued:
            return False
        self.batch(items)
        return True

    def run(self, rounds: int = 400) -> None:
        self.start()
        for _ in range(rounds):
            self.deliver()
            if not self.step():
                return
        raise AssertionError("the transfer did not finish")

    def published(self, group: bool) -> int:
        return sum(1 for t, _ in self.sink.sent if (t == self.topic) == group and t.endswith("/blk"))


def test_each_block_is_broadcast_once_for_the_whole_group(repo):
    world = World(repo, n=6, blocks=40, window=8)
    world.run()
    assert all(len(d.held) == 40 for d in world.devices)
    assert world.published(group=True) == 40  # one publish per block for six devices
    assert world.published(group=False) == 0  # nothing lost: no repair
    for d in world.devices:
        transfer = repo.get_execution(d.eid).transfer
        assert transfer.complete and transfer.member and not transfer.unicast


def test_a_lost_group_frame_is_repaired_on_the_devices_own_topic_only(repo):
    world = World(repo, n=4, blocks=24, window=8)
    world.devices[2].lose = {3, 17}
    world.run()
    assert all(len(d.held) == 24 for d in world.devices)
    assert world.published(group=True) == 24
    unicast = [(t, wire.decode_frame(p).index) for t, p in world.sink.sent if t.endswith("/blk") and t != world.topic]
    assert sorted(unicast) == [("ota/dev-2/blk", 3), ("ota/dev-2/blk", 17)]
    assert all(wire.decode_frame(p).stream == 102 for t, p in world.sink.sent if t == "ota/dev-2/blk")


def test_an_agent_without_group_support_is_served_by_unicast_beside_the_group(repo):
    world = World(repo, n=4, blocks=20, window=8, legacy=1)
    world.run()
    assert all(len(d.held) == 20 for d in world.devices)
    assert world.published(group=True) == 20
    assert sorted({t for t, _ in world.sink.sent if t.endswith("/blk") and t != world.topic}) == ["ota/dev-0/blk"]
    assert not repo.get_execution("ex-0").transfer.member


def test_a_member_that_keeps_losing_falls_back_to_unicast_and_is_told_so(repo):
    world = World(repo, n=3, blocks=64, window=4)
    world.devices[1].lose = set(range(8, 64))  # its group frames stop arriving after block 8
    world.run()
    assert all(len(d.held) == 64 for d in world.devices)
    slow = repo.get_execution("ex-1").transfer
    assert slow.unicast and not slow.member
    docs = [messages.decode(p) for t, p in world.sink.sent if t == "ota/dev-1/job"]
    assert docs and all(isinstance(d, messages.JobDocument) and d.group is None for d in docs)
    assert world.published(group=True) == 64  # the others still take the broadcast
    assert not repo.get_execution("ex-1").transfer.member and repo.get_execution("ex-0").transfer.member


@pytest.mark.parametrize("wrong", ["other-stream", "no-group"])
def test_only_the_right_group_stream_joins(repo, wrong):
    world = World(repo, n=2, blocks=8, window=8)
    d = world.devices[0]
    g = (world.group + 1) % 65536 if wrong == "other-stream" else None
    get = wire.make_request(d.eid, d.stream, range(8), group=g)
    world.batch([DeviceMessage(d.epn, "get", wire.encode_request(get), 1.0)])
    transfer = repo.get_execution(d.eid).transfer
    assert not transfer.member
    assert world.published(group=True) == 0 and world.published(group=False) == 8  # unicast, as v1


def test_a_backlog_of_device_messages_moves_no_member_to_unicast(repo):
    # half the members' messages are handled 8 batches late (a queue backlog: acks delayed, not lost), while
    # the other half drive the broadcast many windows ahead of what the late ones are known to hold
    late = {f"dev-{i}": 8 for i in range(0, 6, 2)}
    world = World(repo, n=6, blocks=64, window=4, backlog=late)
    world.run(1000)
    assert all(len(d.held) == 64 for d in world.devices)
    for d in world.devices:
        transfer = repo.get_execution(d.eid).transfer
        assert transfer.member and not transfer.unicast, d.epn
    assert not [t for t, _ in world.sink.sent if t.endswith("/job")]  # no job document again: nobody fell back
    assert world.published(group=True) == 64


@pytest.mark.parametrize(("later", "written"), [(0.5, False), (1.5, True)])
def test_a_message_that_changes_nothing_is_written_at_most_once_a_second(repo, later, written):
    # a late duplicate of an ack (the broker received it no later than the last message applied) changes
    # nothing but `heard_at` (the sweeper's "heard from the device"), which it refreshes only when that is a
    # second old or more: such messages cost no write of their own more often than that
    world = World(repo, n=2, blocks=8, window=8)
    world.run()
    d = world.devices[0]
    before = repo.get_execution(d.eid)
    world.now = before.transfer.heard_at + later
    again = wire.make_ack(d.eid, d.stream, d.held, d.total, group=d.g(world.group))
    world.batch([DeviceMessage(d.epn, "ack", wire.encode_ack(again), before.last_activity)])
    after = repo.get_execution(d.eid)
    assert (after.version > before.version) is written
    assert after.transfer.heard_at == (world.now if written else before.transfer.heard_at)


@pytest.mark.parametrize(("member", "after", "resent"), [
    (True, 6.0, False), (True, 21.0, True),  # a member: the backstop waits 4 x ACK_TIMEOUT
    (False, 6.0, True),  # unicast (an agent without group support): 5 s as before
])
def test_the_sweepers_backstop_waits_longer_for_a_group_member(repo, member, after, resent):
    from chalicelib.services.sweep import sweep

    world = World(repo, n=2, blocks=8, window=8, legacy=0 if member else 2)
    world.start()
    world.deliver()  # every device holds blocks 0-7; its acks are lost (never handed over)
    sent = len(world.sink.sent)
    last = max(repo.get_execution(d.eid).transfer.last_send_at for d in world.devices)
    sweep(repo, BlockStorage(), world.sink, last + after)
    again = [t for t, _ in world.sink.sent[sent:] if t.endswith("/blk")]
    assert bool(again) is resent
    assert all(t != world.topic for t in again)  # a backstop resend is always unicast


def test_a_handler_holding_a_stale_group_takes_the_newer_one_its_container_knows(repo):
    # two handlers of one container read the group before either advanced it: the second sees the first's
    # broadcast in the shared cache and does not try (and fail) a write of its own
    from chalicelib.services import groups

    world = World(repo, n=2, blocks=64, window=8)
    world.start()  # the first get started the group: blocks 0-7 broadcast
    stale = world.cache.groups[rules.group_id("job-1", MODEL)]
    member = repo.get_execution("ex-0").transfer
    acked, _ = member.sync(stale.next_index, stale.recent).ack(range(8), 2.0)
    saves = []
    counting = type("Counting", (), {"__getattr__": lambda _, name: getattr(repo, name),
                                     "save_group": lambda _, g: (saves.append(g), repo.save_group(g))[1]})()
    first = groups.advance_for(counting, BlockStorage(), world.sink, world.cache, world.job, stale, acked, 3.0)
    second = groups.advance_for(counting, BlockStorage(), world.sink, world.cache, world.job, stale, acked, 3.1)
    assert (first, second) == (8, 0) and len(saves) == 1
