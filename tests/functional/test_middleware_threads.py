"""The app's middleware under concurrent requests in one process (the local API server runs one thread per
request; Lambda one event at a time): the metrics each request adds and flushes never break another's."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from types import SimpleNamespace
from typing import Any

from chalice import Response

import app as chalice_app

THREADS = 8
SWITCH_SECONDS = 1e-6  # switch threads as often as the interpreter can, to meet the race if there is one
REQUESTS = 300


def _request(i: int) -> Any:
    return SimpleNamespace(headers={"x-correlation-id": f"c-{i}"}, context={}, method="GET", path="/keys")


def test_concurrent_requests_all_get_their_answer() -> None:
    failures: list[str] = []
    barrier = threading.Barrier(THREADS)

    def client(n: int) -> None:
        barrier.wait()
        for i in range(REQUESTS):
            try:
                answer = chalice_app.observe_http(_request(i), lambda _e: Response(body={"ok": n}, status_code=200))
                if answer.status_code != 200:
                    failures.append(f"status {answer.status_code}")
            except Exception as err:  # any escape is what the test looks for
                failures.append(repr(err))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_SECONDS)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the flushed EMF metrics are printed
            threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert failures == []
