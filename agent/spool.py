"""The private spool of one download: a file of exactly package_size bytes written in place, and the
persisted bitmap of blocks that are durable in it (THREATS 4, 20-24).

Blocks are written with os.pwrite at index * block_size; the file is truncated to package_size when
created and never grows past it. `flush()` fsyncs the spool and then persists the bitmap, so a bit
on disk always means the block is on disk. The bitmap file is created atomically once, then
overwritten in place with one fdatasync per flush: during a download bits are only ever set, and
every set bit's block is durable before the bitmap is written, so even a torn overwrite (a mix of
old and new bytes) states nothing false: two syncs per ack instead of three.
Frame checking (CRC, stream, range, size) is done
here too; nothing else (no hashes, no signatures: that is agent.verify's job).
"""

from __future__ import annotations

import contextlib
import os
import shutil

from otaformat import wire
from otaformat.errors import MalformedError

from .store import atomic_write, fsync_dir

PACKAGE = "package.bin"
BITMAP = "bitmap.bin"


class Spool:
    def __init__(self, directory: str, *, package_size: int, block_size: int, block_count: int, stream: int) -> None:
        if block_count != wire.block_count(package_size, block_size) or package_size == 0:
            raise MalformedError(
                f"block_count {block_count} does not match package_size {package_size} / block_size {block_size}"
            )
        self.directory = directory
        self.package_size = package_size
        self.block_size = block_size
        self.block_count = block_count
        self.stream = stream
        self.have = bytearray((block_count + 7) // 8)
        self.count = 0
        self.dirty = 0
        self._floor = 0
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, PACKAGE)
        self.bitmap_path = os.path.join(directory, BITMAP)
        self._bitmap_fd = -1
        self._load_bitmap()
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        if os.fstat(self.fd).st_size != package_size:
            os.ftruncate(self.fd, package_size)

    def _load_bitmap(self) -> None:
        try:
            with open(self.bitmap_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        if len(data) != len(self.have) or not os.path.exists(self.path):
            return  # from another job or torn: start over, the spool is rewritten anyway
        self.have[:] = data
        self.count = sum(bin(b).count("1") for b in self.have)

    def has(self, index: int) -> bool:
        return bool(self.have[index >> 3] >> (index & 7) & 1)

    def expected_size(self, index: int) -> int:
        if index == self.block_count - 1:
            return self.package_size - self.block_size * (self.block_count - 1)
        return self.block_size

    def check(self, message: bytes, stream: int | None = None) -> wire.BlockFrame:
        """Decode and check a frame against this download; raises MalformedError with a code. `stream` is
        the one the frame must carry (default: the execution's; the group stream for group frames)."""
        if len(message) > wire.FRAME_HEADER.size + self.block_size:
            raise MalformedError(f"frame of {len(message)} bytes exceeds the block size", code="oversized")
        frame = wire.decode_frame(message, max_block=self.block_size)
        expected = self.stream if stream is None else stream
        if frame.stream != expected:
            raise MalformedError(f"frame for stream {frame.stream}, expected {expected}", code="stream")
        if frame.total != self.block_count or frame.index >= self.block_count:
            raise MalformedError(f"block {frame.index}/{frame.total} out of range", code="range")
        if len(frame.data) != self.expected_size(frame.index):
            raise MalformedError(f"block {frame.index} has {len(frame.data)} bytes", code="size")
        return frame

    def write(self, frame: wire.BlockFrame) -> bool:
        """Write a checked frame in place; False (and nothing written) if the block is already held."""
        if self.has(frame.index):
            return False
        os.pwrite(self.fd, frame.data, frame.index * self.block_size)
        self.have[frame.index >> 3] |= 1 << (frame.index & 7)
        self.count += 1
        self.dirty += 1
        return True

    def write_range(self, offset: int, data: bytes) -> None:
        """URL mode: write bytes at a block-aligned offset, marking every block fully covered."""
        if offset % self.block_size or offset + len(data) > self.package_size:
            raise MalformedError("range write outside the package", code="range")
        os.pwrite(self.fd, data, offset)
        first = offset // self.block_size
        end = offset + len(data)
        for index in range(first, self.block_count):
            if index * self.block_size + self.expected_size(index) > end:
                break
            if not self.has(index):
                self.have[index >> 3] |= 1 << (index & 7)
                self.count += 1
                self.dirty += 1

    def contiguous(self) -> int:
        """Number of leading blocks held; the scan cursor only moves forward (bits are never cleared)."""
        j = self._floor
        while j < len(self.have) and self.have[j] == 0xFF:
            j += 1
        self._floor = j
        n = j * 8
        if j < len(self.have):
            byte = self.have[j]
            while byte & 1:
                byte >>= 1
                n += 1
        return min(n, self.block_count)

    def ack(self, execution_id: str) -> wire.Ack:
        """The ack for what is held, as `wire.make_ack` would build it, in O(bitmap window) not O(blocks)."""
        n = self.contiguous()
        span = min(self.block_count - n, wire.MAX_BITMAP_BYTES * 8)
        if span <= 0:
            return wire.Ack(execution_id, self.stream, n, b"")
        first, shift = divmod(n, 8)
        chunk = bytes(self.have[first : first + (span + shift + 7) // 8 + 1])
        bits = (int.from_bytes(chunk, "little") >> shift) & ((1 << span) - 1)
        bitmap = bits.to_bytes((span + 7) // 8, "little").rstrip(b"\x00")
        return wire.Ack(execution_id, self.stream, n, bitmap)

    @property
    def complete(self) -> bool:
        return self.count == self.block_count

    def held(self) -> set[int]:
        return {i for i in range(self.block_count) if self.has(i)}

    def missing(self) -> list[int]:
        return [i for i in range(self.block_count) if not self.has(i)]

    def flush(self) -> None:
        """Make every written block durable, then persist the bitmap (a bit implies a durable block)."""
        if not self.dirty:
            return
        os.fdatasync(self.fd)
        if self._bitmap_fd < 0:
            atomic_write(self.bitmap_path, bytes(self.have))
            self._bitmap_fd = os.open(self.bitmap_path, os.O_WRONLY | os.O_NOFOLLOW)
        else:
            os.pwrite(self._bitmap_fd, bytes(self.have), 0)
            os.fdatasync(self._bitmap_fd)
        self.dirty = 0

    def read_all(self) -> bytes:
        with open(self.path, "rb") as f:
            data = f.read(self.package_size + 1)
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._bitmap_fd >= 0:
            os.close(self._bitmap_fd)
            self._bitmap_fd = -1


def remove_spool(directory: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(directory)
    parent = os.path.dirname(directory)
    if os.path.isdir(parent):
        fsync_dir(parent)
