"""Group delivery as a simulated device sees it: the job document's `group` object, read leniently.

Issue 13's broadcast: the cloud publishes each block once on a group topic for every device taking the
same package, and repairs per device on `ota/{epn}/blk`. A job document taking part carries a `group`
object naming the topic to subscribe to and the stream its frames carry (docs/protocol.md, "Group
delivery"). This module only extracts those two: a document without `group`, or with one this reader
does not understand, means plain unicast, which is always correct (the cloud repairs per device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otaformat import topics
from otaformat.errors import MalformedError


@dataclass(frozen=True)
class GroupInfo:
    topic: str
    stream: int


def parse_group(value: Any, model: str) -> GroupInfo | None:
    """GroupInfo from a job document's `group` value, or None (unicast)."""
    if not isinstance(value, dict):
        return None
    stream = value.get("stream", value.get("s"))
    if isinstance(stream, bool) or not isinstance(stream, int) or not 0 <= stream <= 0xFFFF:
        return None
    topic = value.get("topic")
    if not isinstance(topic, str):
        try:
            topic = topics.model_block_topic(str(value.get("model", model)))
        except (ValueError, MalformedError):
            return None
    if not topic.startswith(f"{topics.PREFIX}/") or any(c in topic for c in "+#\0"):
        return None
    return GroupInfo(topic, stream)
