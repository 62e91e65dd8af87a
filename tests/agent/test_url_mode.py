"""URL mode against a local HTTP server: Range requests, expired URLs, fresh URL, resume, size cap."""

from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.download import UrlDownload
from agent.spool import Spool
from otaformat import messages, wire

from .pkgtools import build_package, job_for


class PackageServer:
    """Serves one file; a URL token is valid for `uses` requests, then answers 403 (expired)."""

    def __init__(self, data: bytes, uses: int = 1000, extra: bytes = b"") -> None:
        self.data, self.uses, self.extra = data, uses, extra
        self.ranges: list[str] = []
        self.counts: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                token = self.path.rsplit("=", 1)[-1]
                server.counts[token] = server.counts.get(token, 0) + 1
                if server.counts[token] > server.uses:
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                rng = self.headers.get("Range", "")
                server.ranges.append(rng)
                match = re.fullmatch(r"bytes=(\d+)-(\d+)", rng)
                if not match:
                    body = server.data + server.extra
                    self.send_response(200)
                else:
                    a, b = int(match[1]), int(match[2])
                    body = server.data[a : b + 1]
                    self.send_response(206)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/pkg?token={token}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def package_and_server(publisher):
    package, envelope = build_package(publisher[0], files={"bin/app": os.urandom(50_000)})
    server = PackageServer(package, uses=2)
    yield package, envelope, server
    server.close()


def test_range_download_refreshes_expired_url_and_resumes(tmp_path, package_and_server):
    package, _, server = package_and_server
    spool = Spool(str(tmp_path / "s"), package_size=len(package), block_size=1024,
                  block_count=wire.block_count(len(package), 1024), stream=1)
    asked = []
    dl = UrlDownload(server.url("a"), spool, lambda: asked.append(True), chunk=8192)
    results = [dl.step() for _ in range(3)]
    assert results == [True, True, False] and dl.waiting
    assert asked == [True] and spool.count == 16  # two chunks of 8 blocks, then 403 and a refresh request
    assert not dl.step()  # waiting for the fresh URL: no request
    for _ in range(200):
        if spool.complete:
            break
        if dl.waiting:
            dl.refresh(server.url(f"t{len(asked)}"))
        dl.step()
    assert spool.complete and spool.read_all() == package
    assert server.ranges[2] == "bytes=16384-24575"  # resumed where it stopped, not from zero


def test_whole_file_answer_longer_than_package_is_aborted(tmp_path, publisher):
    package, _ = build_package(publisher[0])
    server = PackageServer(package, extra=b"endless data")
    try:
        spool = Spool(str(tmp_path / "s"), package_size=len(package), block_size=1024,
                      block_count=wire.block_count(len(package), 1024), stream=1)
        dl = UrlDownload(server.url("a"), spool, lambda: None)
        dl.session.headers["Range"] = ""
        dl.next_range = lambda: (0, len(package) - 1)  # type: ignore[method-assign]
        server.ranges.clear()

        class NoRange:  # a server that ignores Range and sends more than declared
            def __init__(self, inner):
                self.inner = inner

            def get(self, url, headers, **kw):
                return self.inner.get(url, headers={}, **kw)

        dl.session = NoRange(dl.session)  # type: ignore[assignment]
        assert not dl.step()
        assert dl.error and "more bytes" in dl.error
        assert os.path.getsize(spool.path) == len(package)
    finally:
        server.close()


def test_agent_in_url_mode_asks_for_a_fresh_url(harness, publisher):
    package, envelope = build_package(publisher[0], files={"bin/app": os.urandom(30_000)})
    server = PackageServer(package, uses=0)  # the first URL is already expired
    try:
        job = job_for(package, envelope, mode="url", url=server.url("old"))
        harness.job(job)
        for _ in range(20):
            harness.idle(0.01)
        refresh = [messages.decode(p) for p in harness.transport.leaf("get")]
        assert refresh == [messages.UrlRefresh(job.execution_id)]
        server.uses = 1000
        fresh = messages.JobDocument(**{**job.__dict__, "url": server.url("new")})
        harness.job(fresh)
        for _ in range(50):
            if harness.transport.terminal():
                break
            harness.idle(0.01)
        assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]
        assert not harness.transport.leaf("ack")  # URL mode sends no acks
    finally:
        server.close()
