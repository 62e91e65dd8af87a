"""The small interface between the agent engine and its message transport, and the inbound items.

The engine only needs: start (with a callback receiving `Connected`, `Disconnected` and `Message`
items, called from any thread), publish to a device->cloud leaf with QoS 1, whether it is connected,
follow / unfollow a group topic (group delivery, docs/protocol.md section 15: its frames arrive as
`Message("group", payload, topic)`), and stop. `agent.mqtt_transport.MqttTransport` is the real one;
tests use an in-memory fake.
Messages over the size limit of their topic are dropped here, before anything decodes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from otaformat import wire
from otaformat.messages import MAX_JOB_DOCUMENT


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class Disconnected:
    reason: str = ""


@dataclass(frozen=True)
class Message:
    leaf: str  # "job", "blk", "cmd", or "group" (a frame on a followed group topic)
    payload: bytes
    topic: str = ""  # the group topic, for leaf "group"


Inbound = Connected | Disconnected | Message
Sink = Callable[[Inbound], None]

# Largest message accepted per cloud->device leaf; anything bigger is dropped unread (THREATS 23).
SIZE_LIMITS = {
    "job": MAX_JOB_DOCUMENT,
    "blk": wire.FRAME_HEADER.size + wire.MAX_BLOCK_SIZE,
    "cmd": wire.MAX_CONTROL_MESSAGE,
    "group": wire.FRAME_HEADER.size + wire.MAX_BLOCK_SIZE,
}


def within_limit(leaf: str, payload: bytes) -> bool:
    return len(payload) <= SIZE_LIMITS.get(leaf, 0)


class Transport(Protocol):
    def start(self, sink: Sink) -> None: ...

    def publish(self, leaf: str, payload: bytes, *, wait: float = 0.0) -> bool:
        """Publish with QoS 1; with `wait` > 0 block up to that long for the broker's PUBACK.

        Returns True when the message was acknowledged (or queued, when wait == 0)."""
        ...

    @property
    def connected(self) -> bool: ...

    def follow(self, topic: str) -> None:
        """Subscribe (QoS 1) to a group topic now if connected, and again on every reconnect."""
        ...

    def unfollow(self, topic: str) -> None:
        """Unsubscribe from a group topic (now, or on the next connect if offline)."""
        ...

    def stop(self) -> None: ...
