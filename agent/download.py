"""URL mode: fetch the package with HTTP Range requests into the spool, one bounded chunk per step.

Each `step()` asks for the next missing run of blocks (at most CHUNK bytes) with
`Range: bytes=a-b`, accepts 206 with exactly that many bytes (or 200 for a whole-file answer, read
only up to the package size + 1), and writes them in place. A body longer than what was asked for (or
than the package) is never read past that length + 1 and ends the download with `error` set (THREATS 4:
the spool is exactly package_size bytes and nothing beyond is read or written). 401/403/410 calls
`on_expired` (the agent publishes UrlRefresh) and waits for `refresh(url)`. Network errors are retried
with backoff; the caller's stall budget is the only limit. One request never takes longer than about
`budget` seconds of real time (connect/read timeouts and a deadline between reads), so a silent or
trickling server cannot hold the agent past its stall budget. Retry times use the injected clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import requests

from .spool import Spool

log = logging.getLogger("ota-agent")
CHUNK = 1 << 20
EXPIRED = (401, 403, 410)
READ = 65536
HEADERS = {"Accept-Encoding": "identity"}  # the bytes on the wire are the package: no decoding, no bombs


class TooLong(Exception):
    """The server sent more bytes than asked for: the download must end (not be retried)."""


class TimedOut(Exception):
    """One request took longer than its real-time budget."""


class UrlDownload:
    def __init__(self, url: str | None, spool: Spool, on_expired: Callable[[], None], *,
                 session: requests.Session | None = None, timeout: float = 30.0, chunk: int = CHUNK,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.spool = spool
        self.on_expired = on_expired
        self.session = session or requests.Session()
        self.timeout = timeout  # connect/read timeout and the whole request's deadline, real seconds
        self.chunk = chunk
        self.clock = clock
        self.waiting = url is None
        self.error: str | None = None
        self.requests_made = 0
        self.retry_at = 0.0
        self.backoff = 0.5

    def refresh(self, url: str) -> None:
        self.url = url
        self.waiting = False

    def next_range(self) -> tuple[int, int] | None:
        missing = self.spool.missing()
        if not missing:
            return None
        first = missing[0]
        last = first
        per_chunk = max(1, self.chunk // self.spool.block_size)
        while last + 1 < self.spool.block_count and not self.spool.has(last + 1) and last - first + 1 < per_chunk:
            last += 1
        start = first * self.spool.block_size
        end = min(self.spool.package_size, (last + 1) * self.spool.block_size) - 1
        return start, end

    def step(self) -> bool:
        """Fetch one chunk; True if new bytes were written. Failures back off up to 8 s."""
        if self.waiting or self.error or self.url is None or self.clock() < self.retry_at:
            return False
        if self._fetch():
            self.backoff = 0.5
            return True
        if not self.waiting:
            self.retry_at = self.clock() + self.backoff
            self.backoff = min(self.backoff * 2, 8.0)
        return False

    def _fetch(self) -> bool:
        wanted = self.next_range()
        if wanted is None or self.url is None:
            return False
        start, end = wanted
        self.requests_made += 1
        deadline = time.monotonic() + self.timeout
        try:
            with self.session.get(self.url, headers={"Range": f"bytes={start}-{end}", **HEADERS}, stream=True,
                                  timeout=self.timeout) as response:
                if response.status_code in EXPIRED:
                    log.info("download URL refused (%s): asking for a fresh one", response.status_code)
                    self.waiting = True
                    self.on_expired()
                    return False
                if response.status_code == 206:
                    offset = start
                    body = read_at_most(response, end - start + 1, deadline)
                    if len(body) != end - start + 1:
                        log.warning("range answer of %d bytes for %d wanted; retrying", len(body), end - start + 1)
                        return False
                elif response.status_code == 200:  # the server ignored Range: take the whole file at once
                    offset = 0
                    body = read_at_most(response, self.spool.package_size, deadline)
                    if len(body) != self.spool.package_size:
                        log.warning("whole-file answer of %d bytes for %d; retrying", len(body),
                                    self.spool.package_size)
                        return False
                else:
                    log.warning("download answered HTTP %s; will retry", response.status_code)
                    return False
        except TooLong as err:
            self.error = str(err)
            return False
        except TimedOut as err:
            log.warning("download: %s; will retry", err)
            return False
        except requests.RequestException as err:
            log.warning("download error: %s; will retry", err)
            return False
        self.spool.write_range(offset, body)
        return True


def _reader(response: requests.Response) -> Callable[[int], bytes]:
    """Read up to n raw bytes as they arrive (one socket read: read1), undecoded; b"" at the end."""
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return lambda n: read1(n, decode_content=False)
    return lambda n: raw.read(n, decode_content=False)  # urllib3 < 2.3: blocks until n bytes


def read_at_most(response: requests.Response, limit: int, deadline: float) -> bytes:
    """Read the body, never more than limit + 1 bytes (THREATS 4): TooLong past limit, TimedOut past deadline."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLong(f"server announced more bytes than asked for (Content-Length {declared} > {limit}; aborted)")
    read = _reader(response)
    out = bytearray()
    while True:
        data = read(min(READ, limit + 1 - len(out)))
        if not data:
            return bytes(out)
        out += data
        if len(out) > limit:
            raise TooLong(f"server sent more bytes than asked for (more than {limit}; aborted after {limit + 1})")
        if time.monotonic() > deadline:
            raise TimedOut(f"answer not complete by the request deadline ({len(out)}/{limit} bytes)")
