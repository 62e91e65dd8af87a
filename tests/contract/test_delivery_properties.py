"""Property test at the service level: any split of duplicated, reordered acks into SQS batches gives
exact counters, never more than the window in flight, and never sends a block twice unasked."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.adapters.memory import MemoryRepository
from chalicelib.domain import executions as ex
from chalicelib.domain.models import bumped
from chalicelib.services.device_messages import DeviceMessage, HotCache, handle_batch
from otaformat import wire

from .test_repository_contract import BlockStorage, Sink, execution, job


def ack(indices, total):
    return DeviceMessage("dev-1", "ack", wire.encode_ack(wire.make_ack("ex-1", 5, indices, total)), 2.0)


@settings(max_examples=60, deadline=None)
@given(total=st.integers(min_value=1, max_value=40), sets=st.lists(st.sets(st.integers(0, 45)), max_size=10),
       copies=st.integers(1, 3), order=st.randoms(use_true_random=False), cut=st.integers(1, 10),
       cached=st.booleans())
def test_batched_duplicated_reordered_acks_count_exactly(total, sets, copies, order, cut, cached):
    repo, sink = MemoryRepository(), Sink()
    window = min(total, 4) if cut % 2 else total  # odd cuts: a window of 4, so acks also name unsent blocks
    repo.create_job(replace(job(blocks=total), window=window), [execution()])
    repo.save_execution(bumped(replace(repo.get_execution("ex-1"), state=ex.IN_PROGRESS)))
    cache = HotCache() if cached else None
    handle_batch(repo, BlockStorage(), sink, [DeviceMessage("dev-1", "get", wire.encode_request(
        wire.make_request("ex-1", 5, range(total))), 1.0)], cache)
    messages = [ack(s, total) for s in sets for _ in range(copies)]
    order.shuffle(messages)
    for start in range(0, len(messages), cut):
        handle_batch(repo, BlockStorage(), sink, messages[start : start + cut], cache)
        transfer = repo.get_execution("ex-1").transfer
        assert transfer.in_flight <= window
    transfer = repo.get_execution("ex-1").transfer
    union = {i for s in sets for i in s if i < total}
    sent_blocks = {wire.decode_frame(p).index for t, p in sink.sent if t == "ota/dev-1/blk"}
    assert transfer.acked_count <= transfer.sent_count  # an ack for a block never sent is not believed
    assert all(not transfer.is_acked(i) or (i in union and i in sent_blocks) for i in range(total))
    if window == total:  # every block in flight before the first ack: each acked block counts exactly once
        assert transfer.acked_count == len(union)
    sent = [wire.decode_frame(p).index for t, p in sink.sent if t == "ota/dev-1/blk"]
    # a block goes out again only as a counted retransmission (fast repair of a hole an ack revealed)
    assert len(sent) == transfer.sent_count and len(set(sent)) == len(sent) - transfer.retransmissions
    assert set(range(transfer.next_index)) <= set(sent)  # below next_index: sent
    assert all(i < transfer.next_index for i in sent)
