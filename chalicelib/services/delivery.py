"""Block-mode delivery: read blocks from the repository object and publish them as binary frames.

The planning (which blocks, how many in flight, what counts as a retransmission) is pure and lives in
domain/window.py and domain/group.py; this module only turns a plan into frames, on `ota/{epn}/blk`
with the execution's stream (`send_blocks`) or once for a whole group on its group topic with the group
stream (`broadcast_blocks`, docs/protocol.md section 15), and starts a transfer. Callers save the
execution (or the group record) with a conditional write before sending, so a lost race never sends
twice; a send that fails after the save is repaired by the sweeper's resend.

Reads: the blocks to send are grouped into runs of consecutive indices, and each run is read with ONE
`Storage.read_range` of at most MAX_READ bytes (a whole window in the usual case, one GET for it on
S3), then sliced into blocks. Memory per call is bounded by MAX_READ, whatever the package size; the
cost per window is one storage round trip instead of one per block. Does not cache anything itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from otaformat import topics, wire

from ..domain.group import group_topic
from ..domain.models import Execution, Group, Job
from ..domain.ports import Publisher, Storage
from ..domain.window import Transfer

ACK_TIMEOUT_SECONDS = 5.0  # the sweeper resends the oldest unacked window after this long without acks or sends
# A `get` resends a requested, sent, unacknowledged block unless the cloud sent it less than this long
# before the request arrived (both timed by the cloud's receive timestamps). Shorter than the device's
# first repair delay (1 s, docs/protocol.md), so every repair request the device makes is answered;
# long enough that the device's first `get` (published with its DOWNLOADING status, before the first
# window reached it) does not send that window twice.
REQUEST_GUARD_SECONDS = 0.5
# The most bytes one storage read covers (a window of 100 blocks of 64 KiB is 6.25 MiB: one read).
MAX_READ = 8 * 1024 * 1024


def ensure_transfer(execution: Execution, job: Job) -> Transfer:
    """The execution's transfer, started (nothing sent yet) if this is the first sign of life."""
    return execution.transfer or Transfer.start(job.block_count, job.window)


def read_runs(indices: Iterable[int], block_size: int, block_count: int,
              max_read: int = MAX_READ) -> Iterator[tuple[int, int]]:
    """(first index, number of blocks) for each run of consecutive in-range indices, in the order given;
    a run never covers more than max_read bytes (at least one block)."""
    per_read = max(1, max_read // max(block_size, 1))
    first = count = 0
    for index in indices:
        if not 0 <= index < block_count:
            continue
        if count and index == first + count and count < per_read:
            count += 1
            continue
        if count:
            yield first, count
        first, count = index, 1
    if count:
        yield first, count


def send_blocks(publisher: Publisher, storage: Storage, job: Job, execution: Execution, indices: Iterable[int]) -> int:
    """Publish the given blocks of the job's package to the execution's device; returns how many.
    Consecutive blocks are read together (one storage read per run, see read_runs)."""
    return _publish(publisher, storage, job, topics.topic(execution.epn, "blk"), execution.stream, indices)


def broadcast_blocks(publisher: Publisher, storage: Storage, job: Job, group: Group, indices: Iterable[int]) -> int:
    """Publish the given blocks once on the group's topic, for every member; returns how many."""
    return _publish(publisher, storage, job, group_topic(job.job_id, group.model, group.wave), group.stream, indices)


def _publish(publisher: Publisher, storage: Storage, job: Job, topic: str, stream: int, indices: Iterable[int]) -> int:
    if not job.package_size:  # an empty package travels as one zero byte (block 0)
        sent = 0
        for index in indices:
            publisher.publish(topic, wire.encode_frame(stream, index, job.block_count, b"\x00"))
            sent += 1
        return sent
    size, sent = job.block_size, 0
    for first, count in read_runs(indices, size, job.block_count):
        start = first * size
        data = storage.read_range(job.repository_key, start, min(count * size, job.package_size - start))
        view = memoryview(data)
        for k in range(count):
            block = bytes(view[k * size : (k + 1) * size])
            publisher.publish(topic, wire.encode_frame(stream, first + k, job.block_count, block))
            sent += 1
    return sent
