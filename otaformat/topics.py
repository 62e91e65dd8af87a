"""MQTT topic names of wire protocol v1. Every topic is built from a validated EPN ID; no wildcards."""

from __future__ import annotations

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


def model_block_topic(model: str) -> str:
    return f"{PREFIX}/model/{check_model(model)}/blk"


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
