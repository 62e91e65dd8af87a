"""moto in server mode on a free loopback port: S3, DynamoDB, SQS and the IoT registry for the stack.

Started as `python -m local.motoserver --port PORT` with the interpreter running this code: moto's own
server (`python -m moto.server`: the same WSGI application, request handler and threaded werkzeug
server) with one difference, DynamoDB requests are served one at a time. moto's DynamoDB backend is
not thread-safe: concurrent TransactWriteItems / BatchWriteItem calls from the API's threads failed
with 500s (the API's 503s) and left half-written jobs. Real DynamoDB is concurrent and the production
code stays so; only the local stand-in is serialised (S3 and SQS, including SQS long polls, stay
concurrent). And its DynamoDB Query costs O(items of the partition), not O(table): local/motoindex.py's
index per GSI partition key, installed here only (it refuses to start on moto internals it was not verified
against). DynamoDB requests skip moto's per-request dispatcher lookup and its shape-walking response
serialiser (local/motofast.py: the same bytes, verified by tests/local/test_motofast.py), and a
TransactWriteItems copies the items it writes, not the whole table, for its rollback (local/mototxn.py);
OTA_MOTO_FAST=0 turns both off, OTA_MOTO_FAST=check compares every fast answer with moto's serialiser's.
A DynamoDB request's body is read before the lock is taken. With OTA_MOTO_PROFILE=PATH in its environment
it profiles the DynamoDB requests (cProfile, written to PATH.PID when it stops: how bench/README.md found
what binds next). Ready means it answers HTTP on `/moto-api/`. It does not create any resource (the
provisioning in chalicelib does).
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from local import procs

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerialDynamoDB:
    """WSGI middleware: every DynamoDB request (X-Amz-Target `DynamoDB_...`) runs under one lock, body included."""

    def __init__(self, app: WsgiApp, profile: cProfile.Profile | None = None) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._profile = profile
        self.serialised = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB"):
            return self._app(environ, start_response)
        length = environ.get("CONTENT_LENGTH")
        if length and str(length).isdigit():  # the body off the socket before the lock, not while holding it
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(int(length)))
        with self._lock:
            self.serialised += 1
            if self._profile is not None:
                self._profile.enable()
            answer = self._app(environ, start_response)
            try:
                return [b"".join(answer)]
            finally:
                close = getattr(answer, "close", None)
                if close is not None:
                    close()
                if self._profile is not None:
                    self._profile.disable()


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(directory: Path, *, port: int | None = None, timeout: float = 60.0) -> tuple[procs.Started, int]:
    """Start moto server, wait until it answers; return the process and its port."""
    port = port or procs.free_port()
    argv = [sys.executable, "-m", "local.motoserver", "--port", str(port), "--host", "127.0.0.1"]
    env = dict(os.environ)
    project = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")]))
    started = procs.start("moto", argv, directory / "moto.log", env=env)
    try:
        procs.wait_until(started, lambda: answers(port), timeout, f"answering on 127.0.0.1:{port}")
    except BaseException:  # not ready, or interrupted (Ctrl-C): never leave it behind
        procs.stop(started)
        raise
    return started, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.motoserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto.server does (presigned URLs, notifications)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    from local import motodelay, motofast, motoindex, mototxn

    motoindex.install()  # raises MotoInternalsChanged: better no stack than a silently slow one
    motodelay.install()  # SQS long polls wake when a delayed message (a paced transfer's wake) is due
    fast = os.environ.get("OTA_MOTO_FAST", "on")
    if fast != "0":
        motofast.install(mode=fast)
        mototxn.install()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    profile = cProfile.Profile() if os.environ.get("OTA_MOTO_PROFILE") else None
    if profile is not None:
        atexit.register(profile.dump_stats, f"{os.environ['OTA_MOTO_PROFILE']}.{os.getpid()}")
    served = SerialDynamoDB(motofast.FastDynamoDB(app, enabled=fast != "0"), profile)
    run_simple(args.host, args.port, served, threaded=True, request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
