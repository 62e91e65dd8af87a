"""URL mode against local HTTP servers: Range requests, expired URLs, fresh URL, resume, size cap, stall."""

from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.download import UrlDownload
from agent.spool import Spool
from otaformat import messages, wire

from .conftest import Harness
from .httpfakes import CountingSession, RawServer, head
from .pkgtools import build_package, deliver, job_for


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


def _too_long_200_with_length(server, conn, start, end):
    server.send(conn, head("200 OK", Content_Length=len(server.package) + 100_000) + server.package)
    server.send_endless(conn, b"")


def _too_long_200_close_delimited(server, conn, start, end):  # no length: only the reader's cap stops it
    server.send_endless(conn, head("200 OK") + server.package)


def _too_long_206_close_delimited(server, conn, start, end):
    content_range = f"bytes {start}-{end}/{len(server.package)}"
    server.send_endless(conn, head("206 Partial Content", Content_Range=content_range) + server.package[start:])


def _too_long_206_with_length(server, conn, start, end):
    server.send(conn, head("206 Partial Content", Content_Length=end - start + 2) + server.package[start : end + 2])


# server that sends more than asked -> (bytes the agent may read at most, beyond the package size)
TOO_LONG = {
    "200 announcing more": (_too_long_200_with_length, 0),
    "200 without length, endless": (_too_long_200_close_delimited, 1),
    "206 without length, endless": (_too_long_206_close_delimited, 1),
    "206 announcing one byte more": (_too_long_206_with_length, 0),
}


@pytest.fixture
def too_long(request, publisher):
    answer, beyond = TOO_LONG[request.param]
    package, envelope = build_package(publisher[0], files={"bin/app": os.urandom(20_000)})
    server = RawServer(answer)
    server.package = package  # type: ignore[attr-defined]
    yield package, envelope, server, beyond
    server.close()


@pytest.mark.parametrize("too_long", list(TOO_LONG), indirect=True)
def test_download_of_more_bytes_than_asked_aborts_without_writing(tmp_path, too_long):
    package, _, server, beyond = too_long
    spool = Spool(str(tmp_path / "s"), package_size=len(package), block_size=1024,
                  block_count=wire.block_count(len(package), 1024), stream=1)
    session = CountingSession()
    dl = UrlDownload(server.url, spool, lambda: None, session=session)
    assert not dl.step()
    assert dl.error and "more bytes than asked" in dl.error
    assert session.body_read <= len(package) + beyond  # never read past the declared length + 1
    assert spool.count == 0 and os.path.getsize(spool.path) == len(package)  # nothing written, never grown
    assert not dl.step() and session.requests == 1  # an aborted download is not retried


@pytest.mark.parametrize("too_long", list(TOO_LONG), indirect=True)
def test_agent_fails_a_server_sending_too_much_and_takes_the_next_job(config, publisher, too_long):
    package, envelope, server, beyond = too_long
    session = CountingSession()
    h = Harness(config, http=session)
    job = job_for(package, envelope, mode="url", url=server.url)
    h.job(job)
    (final,) = h.transport.terminal()
    assert (final.execution_id, final.state) == (job.execution_id, "FAILED")
    assert final.reason and final.reason.startswith("download aborted: server") and "more bytes" in final.reason
    assert session.body_read <= len(package) + beyond and session.requests == 1
    assert h.agent.state == "IDLE" and not os.path.exists(os.path.join(config.data_dir, "spool", "current"))
    h.restart()  # the failure is final: a restart does not go back to the same URL
    assert h.agent.state == "IDLE" and session.requests == 1
    following = deliver(h, *build_package(publisher[0], version="1.1.0"))
    assert [(s.execution_id, s.state) for s in h.transport.terminal()][-1] == (following.execution_id, "SUCCEEDED")


def test_expired_url_never_refreshed_hits_the_stall_budget(harness, publisher):
    package, envelope = build_package(publisher[0])
    server = PackageServer(package, uses=0)  # every request: 403, and the cloud never sends a fresh URL
    try:
        harness.job(job_for(package, envelope, mode="url", url=server.url("old")))
        assert harness.agent.url is not None and harness.agent.url.waiting
        harness.idle(harness.config.stall_budget - 1)
        assert harness.transport.terminal() == []
        harness.idle(1)
        (final,) = harness.transport.terminal()
        assert final.state == "FAILED" and final.reason.startswith("download stalled: no new data for 30 s")
        assert harness.agent.state == "IDLE"
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


def test_url_mode_reports_its_progress_while_downloading(harness, publisher):
    """URL mode has no acks: the agent sends DOWNLOADING statuses with the blocks it holds, every 3 s."""
    package, envelope = build_package(publisher[0], files={"bin/app": os.urandom(6 << 20)})
    server = PackageServer(package, uses=1000)
    try:  # 6 MiB in 1 MiB ranges, one range per turn, a turn a second: about 6 s of downloading
        job = job_for(package, envelope, mode="url", url=server.url("t"), block_size=32 * 1024)
        harness.job(job)
        held: list[int] = []
        for _ in range(400):
            if harness.transport.terminal():
                break
            harness.idle(1.0)
            held = [s.progress for s in harness.transport.statuses()
                    if s.state == "IN_PROGRESS" and s.step == "DOWNLOADING" and s.progress]
        assert [s.state for s in harness.transport.terminal()] == ["SUCCEEDED"]
        assert held, "no progress was reported while downloading"
        assert held == sorted(held) and len(set(held)) == len(held)  # only when it grew, never backwards
        assert all(h < job.block_count for h in held)
    finally:
        server.close()
