"""local/motodelay.py: moto's SQS long poll also wakes when the earliest delayed message is due."""

from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass, field

from local import motodelay


class RecordingCondition(threading.Condition):
    """A Condition that records how long each wait asked to sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.asked.append(float(timeout or 0.0))
        return super().wait(timeout)


@dataclass
class Message:
    delayed_until: float  # epoch milliseconds, as moto's

    @property
    def delayed(self) -> bool:
        return time.time() * 1000 < self.delayed_until


@dataclass
class Queue:
    _messages: list[Message]
    _messages_lock: RecordingCondition = field(default_factory=RecordingCondition)

    @property
    def messages(self) -> list[Message]:
        return [m for m in self._messages if not m.delayed]


def test_the_wait_ends_when_the_delayed_message_is_due_not_at_the_poll_timeout() -> None:
    queue = Queue([Message((time.time() + 0.05) * 1000)])
    motodelay.wait_for_messages(queue, 20)
    assert queue.messages  # it returned because the message became visible
    assert queue._messages_lock.asked and queue._messages_lock.asked[0] <= 0.05  # not 20 s, nor moto's 1 s


def test_without_delayed_messages_it_waits_for_the_poll_timeout() -> None:
    queue = Queue([])
    motodelay.wait_for_messages(queue, 0)
    assert queue._messages_lock.asked == []  # a zero timeout never waits
    assert not queue.messages


def test_install_checks_moto_and_is_idempotent() -> None:
    from moto.sqs import models

    original = models.Queue.wait_for_messages
    try:
        assert inspect.getsource(original) == motodelay.VERIFIED_SOURCE  # an upgrade of moto is flagged here
        motodelay.install()
        motodelay.install()
        assert models.Queue.wait_for_messages is motodelay.wait_for_messages
    finally:
        models.Queue.wait_for_messages = original
