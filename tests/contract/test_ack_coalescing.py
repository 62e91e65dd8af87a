"""The device-message path stays ahead of a fleet (issue 13): a batch costs one execution write per
device however many acks it holds, and a lost write race is merged from the item the failed conditional
write returned, not read again (on both repositories)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chalicelib.domain import executions as ex
from chalicelib.domain.models import bumped
from chalicelib.services.device_messages import DeviceMessage, HotCache, handle_batch
from otaformat import wire

from .test_repository_contract import BlockStorage, Sink, execution, job


class Counting:
    """The repository, counting execution reads and writes; `race` saves a competing write first, once."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.reads, self.writes, self.race = inner, 0, 0, False

    def get_execution(self, execution_id: str) -> Any:
        self.reads += 1
        return self.inner.get_execution(execution_id)

    def save_execution(self, saved: Any) -> None:
        self.writes += 1
        if self.race:  # another poller stored a version first (it acked block 63)
            self.race = False
            current = self.inner.get_execution(saved.execution_id)
            transfer, _ = current.transfer.ack([63], 9.0)
            self.inner.save_execution(bumped(current, transfer=transfer))
        self.inner.save_execution(saved)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def started(repo: Any) -> tuple[Counting, Sink, HotCache]:
    repo.create_job(replace(job(blocks=64), window=64), [execution()])
    repo.save_execution(bumped(replace(repo.get_execution("ex-1"), state=ex.IN_PROGRESS)))
    sink, cache = Sink(), HotCache()
    get = wire.encode_request(wire.make_request("ex-1", 5, range(64)))
    handle_batch(repo, BlockStorage(), sink, [DeviceMessage("dev-1", "get", get, 1.0)], cache)
    return Counting(repo), sink, cache


def ack(indices: range, at: float) -> DeviceMessage:
    return DeviceMessage("dev-1", "ack", wire.encode_ack(wire.make_ack("ex-1", 5, indices, 64)), at)


def test_ten_acks_of_one_device_in_a_batch_are_one_write(repo):
    counting, sink, cache = started(repo)
    batch = [ack(range(0, 4 * (k + 1)), 2.0 + k / 100) for k in range(10)]
    outcome = handle_batch(counting, BlockStorage(), sink, batch, cache)
    assert outcome.applied == 10 and not outcome.failures
    assert counting.writes == 1 and counting.reads == 0  # the cached execution, one conditional write
    assert repo.get_execution("ex-1").transfer.acked_count == 40


def test_a_lost_race_is_merged_from_the_failed_writes_item_without_a_read(repo):
    counting, sink, cache = started(repo)
    counting.race = True
    outcome = handle_batch(counting, BlockStorage(), sink, [ack(range(0, 8), 2.0)], cache)
    assert not outcome.failures
    assert counting.writes == 2 and counting.reads == 0  # the retry started from the returned item
    transfer = repo.get_execution("ex-1").transfer
    assert transfer.acked_count == 9 and transfer.is_acked(63)  # both writers' acks kept
