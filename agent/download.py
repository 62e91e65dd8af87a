"""URL mode: fetch the package with HTTP Range requests into the spool, one bounded chunk per step.

Each `step()` asks for the next missing run of blocks (at most CHUNK bytes) with
`Range: bytes=a-b`, accepts 206 with exactly that many bytes (or 200 for a whole-file answer, read
only up to the package size + 1), and writes them in place. 401/403/410 or an expired URL calls
`on_expired` (the agent publishes UrlRefresh) and waits for `refresh(url)`. Network errors are retried
with the caller's stall budget as the only limit. Never reads more than the package size + 1 bytes.
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


class UrlDownload:
    def __init__(self, url: str | None, spool: Spool, on_expired: Callable[[], None], *,
                 session: requests.Session | None = None, timeout: float = 30.0, chunk: int = CHUNK) -> None:
        self.url = url
        self.spool = spool
        self.on_expired = on_expired
        self.session = session or requests.Session()
        self.timeout = timeout
        self.chunk = chunk
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
        if self.waiting or self.url is None or time.monotonic() < self.retry_at:
            return False
        if self._fetch():
            self.backoff = 0.5
            return True
        if not self.waiting:
            self.retry_at = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, 8.0)
        return False

    def _fetch(self) -> bool:
        wanted = self.next_range()
        if wanted is None:
            return False
        start, end = wanted
        self.requests_made += 1
        try:
            with self.session.get(self.url, headers={"Range": f"bytes={start}-{end}"}, stream=True,
                                  timeout=self.timeout) as response:
                if response.status_code in EXPIRED:
                    log.info("download URL refused (%s): asking for a fresh one", response.status_code)
                    self.waiting = True
                    self.on_expired()
                    return False
                if response.status_code == 206:
                    body = _read_at_most(response, end - start + 1)
                    if len(body) != end - start + 1:
                        log.warning("range answer of %d bytes for %d wanted; retrying", len(body), end - start + 1)
                        return False
                elif response.status_code == 200:
                    whole = _read_at_most(response, self.spool.package_size)
                    if len(whole) > self.spool.package_size:
                        self.error = "server sent more bytes than the package size (aborted)"
                        return False
                    body = whole[start : end + 1]
                    if len(body) != end - start + 1:
                        return False
                else:
                    log.warning("download answered HTTP %s; will retry", response.status_code)
                    return False
        except requests.RequestException as err:
            log.warning("download error: %s; will retry", err)
            return False
        self.spool.write_range(start, body)
        return True


def _read_at_most(response: requests.Response, limit: int) -> bytes:
    """Read the body but never more than limit + 1 bytes (THREATS 4)."""
    out = bytearray()
    for chunk in response.iter_content(65536):
        out += chunk
        if len(out) > limit:
            return bytes(out[: limit + 1])
    return bytes(out)
