"""MQTT topic names of wire protocol v1. Every topic is built from a validated EPN ID; no wildcards.

Group delivery (docs/protocol.md section 15) adds `ota/g/{model}/{group}/blk`: five levels, so it can
never equal a device topic (three levels, four for `cmd/result`), whatever the EPN."""

from __future__ import annotations

import re

from .errors import MalformedError
from .ids import check_epn, check_model

PREFIX = "ota"
DEVICE_TO_CLOUD = ("ack", "get", "status", "cmd/result")
CLOUD_TO_DEVICE = ("job", "blk", "cmd")


def topic(epn: str, leaf: str) -> str:
    if leaf not in DEVICE_TO_CLOUD + CLOUD_TO_DEVICE:
        raise ValueError(f"unknown topic leaf {leaf!r}")
    return f"{PREFIX}/{check_epn(epn)}/{leaf}"


def device_topics(epn: str) -> dict[str, str]:
    return {leaf.replace("/", "_"): topic(epn, leaf) for leaf in CLOUD_TO_DEVICE + DEVICE_TO_CLOUD}


GROUP = "g"
_GROUP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_group_id(group: object) -> str:
    if not isinstance(group, str) or not _GROUP_ID.fullmatch(group):
        raise MalformedError("group id must match ^[A-Za-z0-9_-]{1,64}$")
    return group


def group_block_topic(model: str, group: str) -> str:
    """The group topic of section 15: the frames of one job for the devices of one model."""
    return f"{PREFIX}/{GROUP}/{check_model(model)}/{check_group_id(group)}/blk"


def parse_group_topic(name: str) -> tuple[str, str] | None:
    """(model, group) of a valid group topic; None for anything else."""
    parts = name.split("/")
    if len(parts) != 5 or parts[0] != PREFIX or parts[1] != GROUP or parts[4] != "blk":
        return None
    try:
        return check_model(parts[2]), check_group_id(parts[3])
    except (ValueError, MalformedError):
        return None


def parse_device_topic(name: str) -> tuple[str, str] | None:
    """Split 'ota/{epn}/{leaf}' into (epn, leaf) for device->cloud leaves; None for anything else."""
    parts = name.split("/")
    if len(parts) < 3 or parts[0] != PREFIX:
        return None
    epn, leaf = parts[1], "/".join(parts[2:])
    if leaf not in DEVICE_TO_CLOUD:
        return None
    try:
        check_epn(epn)
    except (ValueError, MalformedError):
        return None
    return epn, leaf
