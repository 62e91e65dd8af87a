"""Block-mode delivery: read blocks from the repository object and publish them as binary frames.

The planning (which blocks, how many in flight, what counts as a retransmission) is pure and lives in
domain/window.py; this module only turns a plan into frames on `ota/{epn}/blk`, and starts a
transfer. Callers save the execution (conditional write) before calling `send_blocks`, so a lost
race never sends twice; a send that fails after the save is repaired by the sweeper's resend.
"""

from __future__ import annotations

from collections.abc import Iterable

from otaformat import topics, wire

from ..domain.models import Execution, Job
from ..domain.ports import Publisher, Storage
from ..domain.window import Transfer

ACK_TIMEOUT_SECONDS = 5.0  # the sweeper resends the oldest unacked window after this long without acks or sends
# A `get` resends a requested, sent, unacknowledged block unless the cloud sent it less than this long
# before the request arrived (both timed by the cloud's receive timestamps). Shorter than the device's
# first repair delay (1 s, docs/protocol.md), so every repair request the device makes is answered;
# long enough that the device's first `get` (published with its DOWNLOADING status, before the first
# window reached it) does not send that window twice.
REQUEST_GUARD_SECONDS = 0.5


def ensure_transfer(execution: Execution, job: Job) -> Transfer:
    """The execution's transfer, started (nothing sent yet) if this is the first sign of life."""
    return execution.transfer or Transfer.start(job.block_count, job.window)


def send_blocks(publisher: Publisher, storage: Storage, job: Job, execution: Execution, indices: Iterable[int]) -> int:
    """Publish the given blocks of the job's package to the execution's device; returns how many."""
    topic = topics.topic(execution.epn, "blk")
    sent = 0
    for index in indices:
        start = index * job.block_size
        length = min(job.block_size, job.package_size - start)
        if length <= 0 and job.package_size:
            continue
        data = storage.read_range(job.repository_key, start, max(length, 0)) if job.package_size else b"\x00"
        publisher.publish(topic, wire.encode_frame(execution.stream, index, job.block_count, data))
        sent += 1
    return sent
