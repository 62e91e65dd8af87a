"""Wake moto's SQS long polls when a delayed message becomes visible (the local moto server only).

moto 5.2.5 holds a ReceiveMessage with WaitTimeSeconds in `Queue.wait_for_messages` (moto/sqs/models.py),
a wait on the queue's condition for up to one second at a time; the condition is notified when a message
is sent, not when a delayed one (DelaySeconds) becomes visible. A paced transfer's wake, sent with
DelaySeconds=1 (chalicelib/services/pacing.py), so reached its handler up to a second late, where SQS
delivers it when due: locally the transfer ran at about half its budget. `install()` replaces that wait
with one that also ends when the earliest delayed message of the queue is due (then moto's own receive
loop takes it). Messages, visibility, delays and the rest stay moto's own code.

moto's internals are not an API: `install()` checks the version and the source of the replaced method
and raises motoindex.MotoInternalsChanged if they differ from the ones verified here (tests/local).
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from local.motoindex import MotoInternalsChanged

VERIFIED_VERSION = "5.2.5"
VERIFIED_SOURCE = """    def wait_for_messages(self, timeout: int) -> None:
        with self._messages_lock:
            self._messages_lock.wait_for(lambda: self.messages, timeout=timeout)
"""


def wait_for_messages(self: Any, timeout: int) -> None:
    """Wait until a message of the queue is visible, at most `timeout` seconds, waking when a delayed
    one is due (moto's `delayed_until` is in epoch milliseconds)."""
    deadline = time.time() + timeout
    with self._messages_lock:
        while not self.messages:
            now = time.time()
            if now >= deadline:
                return
            due = [m.delayed_until / 1000.0 - now for m in self._messages if m.delayed]
            self._messages_lock.wait(min([deadline - now, *(max(0.001, d) for d in due)]))


def install() -> None:
    """Patch moto's SQS Queue in this process (idempotent)."""
    import moto
    from moto.sqs import models

    current = models.Queue.wait_for_messages
    if current is wait_for_messages:
        return
    if moto.__version__ != VERIFIED_VERSION or inspect.getsource(current) != VERIFIED_SOURCE:
        raise MotoInternalsChanged(f"moto {moto.__version__}: Queue.wait_for_messages is not the one "
                                   f"local/motodelay.py was verified against ({VERIFIED_VERSION})")
    models.Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]
