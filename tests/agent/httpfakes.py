"""HTTP doubles for URL-mode tests: a loopback server with scripted (mis)behaviour, and session doubles.

`RawServer(answer)` accepts connections on 127.0.0.1 and hands each request to `answer(server, conn,
start, end)` (the asked Range, or None) which writes raw bytes, so a test can play a server that sends
too much, never answers or trickles. `CountingSession` is a real requests.Session that counts requests
and the body bytes the agent actually read; `ExplodingSession` raises once from `get` (a fault double).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

import requests

Answer = Callable[["RawServer", socket.socket, "int | None", "int | None"], None]
ENDLESS = 64 << 20  # what an "endless" server would send at most


class RawServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ranges: list[str] = []
        self.sent = 0
        self.stopped = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pkg"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            match = re.search(rb"(?im)^range:\s*bytes=(\d+)-(\d+)\s*$", head)
            self.ranges.append(match.group(0).decode() if match else "")
            start, end = (int(match[1]), int(match[2])) if match else (None, None)
            with contextlib.suppress(OSError):
                self.answer(self, conn, start, end)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def send_endless(self, conn: socket.socket, first: bytes) -> None:
        """`first`, then filler until the client hangs up (or ENDLESS bytes)."""
        self.send(conn, first)
        filler = b"\0" * 65536
        while not self.stopped.is_set() and self.sent < ENDLESS:
            self.send(conn, filler)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def head(status: str, **headers: int | str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class CountingSession(requests.Session):
    """A real session that counts requests and the body bytes read through it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.body_read = 0

    def get(self, url: str | bytes, **kw: Any) -> requests.Response:  # type: ignore[override]
        self.requests += 1
        response = super().get(url, **kw)
        response.raw = _CountingRaw(response.raw, self)
        return response


class _CountingRaw:
    def __init__(self, inner: Any, owner: CountingSession) -> None:
        self._inner = inner
        self._owner = owner

    def read1(self, amt: int = -1, decode_content: bool | None = None) -> bytes:
        data = self._inner.read1(amt, decode_content=decode_content)
        self._owner.body_read += len(data)
        return data

    def read(self, amt: int | None = None, decode_content: bool | None = None, **kw: Any) -> bytes:
        data = self._inner.read(amt, decode_content=decode_content, **kw)
        self._owner.body_read += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ExplodingSession(CountingSession):
    """Raises a non-network error from the first `get` (an agent fault, not a transfer problem)."""

    def get(self, url: str | bytes, **kw: Any) -> requests.Response:  # type: ignore[override]
        if self.requests == 0:
            self.requests += 1
            raise ValueError("injected fault in the HTTP session")
        return super().get(url, **kw)
