"""moto in server mode on a free loopback port: S3, DynamoDB, SQS and the IoT registry for the stack.

Started as `python -m moto.server -p PORT -H 127.0.0.1` with the interpreter running this code (the
`moto_server` script is the same entry point but may not be on PATH). Ready means it answers HTTP on
`/moto-api/`. It does not create any resource (the provisioning in chalicelib does).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from local import procs


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(directory: Path, *, port: int | None = None, timeout: float = 60.0) -> tuple[procs.Started, int]:
    """Start moto server, wait until it answers; return the process and its port."""
    port = port or procs.free_port()
    argv = [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"]
    started = procs.start("moto", argv, directory / "moto.log")
    try:
        procs.wait_until(started, lambda: answers(port), timeout, f"answering on 127.0.0.1:{port}")
    except BaseException:  # not ready, or interrupted (Ctrl-C): never leave it behind
        procs.stop(started)
        raise
    return started, port
