"""services.delivery reads blocks in ranges covering whole windows (one storage read per run of
consecutive blocks, at most MAX_READ bytes), and the S3 adapter's cache is bounded in bytes."""

from __future__ import annotations

import hashlib

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.s3 import S3Storage
from chalicelib.domain.models import Execution, Job
from chalicelib.services.delivery import MAX_READ, read_runs, send_blocks
from otaformat import wire


class CountingStorage:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def read_range(self, key: str, start: int, length: int) -> bytes:
        self.reads.append((start, length))
        return self.data[start : start + length]


class Frames:
    def __init__(self) -> None:
        self.frames: list[wire.BlockFrame] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.frames.append(wire.decode_frame(payload, max_block=1 << 20))

    def flush(self) -> None:
        pass


def _job(size: int, block_size: int, window: int) -> Job:
    return Job("j", "u", "block", block_size, window, 60, 600, ("d",), {}, "ACTIVE", 0.0, "a", "1.0.0", size,
               "0" * 64, "packages/a/1.0.0/x.otapkg", wire.block_count(size, block_size))


def _execution() -> Execution:
    return Execution("x", "j", "d", "IN_PROGRESS", 7, "block", 0.0, 0.0)


@pytest.mark.parametrize(("size", "block_size", "window"), [(10_000, 1024, 4), (1 << 20, 4096, 64), (5000, 4096, 16)])
def test_one_read_per_window(size, block_size, window):
    data = hashlib.sha256(b"x").digest() * (size // 32 + 1)
    data = data[:size]
    storage, frames = CountingStorage(data), Frames()
    job = _job(size, block_size, window)
    windows = [range(w, min(w + window, job.block_count)) for w in range(0, job.block_count, window)]
    for indices in windows:
        assert send_blocks(frames, storage, job, _execution(), indices) == len(indices)
    assert len(storage.reads) == len(windows)
    assert b"".join(f.data for f in frames.frames) == data
    assert [f.index for f in frames.frames] == list(range(job.block_count))


def test_scattered_resends_read_only_their_runs():
    job = _job(100 * 1024, 1024, 64)
    storage, frames = CountingStorage(bytes(range(256)) * 400), Frames()
    assert send_blocks(frames, storage, job, _execution(), [3, 4, 5, 9, 40, 41, 99, 100, -1]) == 7
    assert storage.reads == [(3 * 1024, 3 * 1024), (9 * 1024, 1024), (40 * 1024, 2048), (99 * 1024, 1024)]
    assert [f.index for f in frames.frames] == [3, 4, 5, 9, 40, 41, 99]


def test_runs_never_exceed_max_read():
    runs = list(read_runs(range(1000), 64 * 1024, 1000))
    assert all(count * 64 * 1024 <= MAX_READ for _, count in runs)
    assert sum(count for _, count in runs) == 1000 and len(runs) == -(-1000 * 64 * 1024 // MAX_READ)


def test_empty_package_sends_one_zero_byte():
    frames = Frames()
    assert send_blocks(frames, CountingStorage(b""), _job(0, 1024, 4), _execution(), [0]) == 1
    assert frames.frames[0].data == b"\x00"


def test_s3_cache_is_bounded_in_bytes():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="stg-b")
        s3.create_bucket(Bucket="repo-b")
        storage = S3Storage(s3, "stg-b", "repo-b", cache_limit=4096, cache_total=10_000)
        objects = {f"packages/a/{i}/k.otapkg": bytes([i]) * (3000 + i) for i in range(6)}
        big = "packages/a/big/k.otapkg"
        objects[big] = b"B" * 20_000
        for key, data in objects.items():
            storage.publish(key, data, hashlib.sha256(data).hexdigest())
        for key, data in objects.items():
            assert storage.read_range(key, 100, 500) == data[100:600]
            assert storage.cached_bytes() <= 10_000
        assert storage.read_range(big, 19_990, 100) == b"B" * 10
