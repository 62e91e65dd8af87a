"""Group delivery as a simulated device sees it (docs/protocol.md section 15): the job document's `group`.

Issue 13's broadcast: the cloud publishes each block once on `ota/g/{model}/{group}/blk` for the
devices of one model taking one job, and repairs per device on `ota/{epn}/blk`. A job document taking
part carries `"group": {"topic": ..., "stream": ...}`. This module reads that object on its own (so the
simulator runs against an otaformat with or without group support): `parse_group` returns None when
there is no group (unicast), a GroupInfo for a valid group of the device's model, and raises
GroupRefused for a malformed group or one of another model (the device then REJECTS the job, 15.2).
The `g` field a member adds to its DOWNLOADING status, acks and requests is added by device.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class GroupRefused(ValueError):
    """The job document's group cannot be followed by this device; the message is the REJECTED reason."""


@dataclass(frozen=True)
class GroupInfo:
    topic: str
    stream: int


def group_topic_model(topic: str) -> str | None:
    """The model of a valid group topic `ota/g/{model}/{group}/blk`, else None."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "ota" or parts[1] != "g" or parts[4] != "blk":
        return None
    if not _ID.fullmatch(parts[2]) or not _ID.fullmatch(parts[3]):
        return None
    return parts[2]


def parse_group(value: Any, model: str) -> GroupInfo | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GroupRefused("malformed: field 'group' must be an object")
    topic, stream = value.get("topic"), value.get("stream")
    if isinstance(stream, bool) or not isinstance(stream, int) or not 0 <= stream <= 0xFFFF:
        raise GroupRefused("malformed: field 'group.stream' must be an integer in 0..65535")
    owner = group_topic_model(topic) if isinstance(topic, str) else None
    if owner is None:
        raise GroupRefused("malformed: field 'group.topic' must be ota/g/{model}/{group}/blk")
    if owner != model:
        raise GroupRefused("malformed: group topic of another model")
    return GroupInfo(str(topic), stream)
