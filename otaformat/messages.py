"""JSON messages of wire protocol v1: job document, cancel, status, inventory, URL refresh. No I/O.

Each message is a canonical JSON object with "v" (protocol version) and "type". Decoders are strict:
unknown types, wrong field types and out-of-range values raise MalformedError naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import topics
from .canonical import MAX_DEPTH, canonical_json, parse_json
from .errors import MalformedError
from .ids import check_app, check_epn, check_model
from .versions import Version
from .wire import MAX_BLOCKS, MAX_DEVICE_JSON_DEPTH, MAX_STREAM, check_block_size

MAX_JOB_DOCUMENT = 120 * 1024
MAX_STATUS_MESSAGE = 16384
MAX_PACE_MS = 60_000  # a job document's `pace_ms` (docs/protocol.md 4.1)
DEVICE_STATES = ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED")
STEPS = ("DOWNLOADING", "VERIFYING", "INSTALLING")
MODES = ("block", "url")


@dataclass(frozen=True)
class Group:
    """Group delivery (docs/protocol.md section 15): the group topic and the stream its frames carry."""

    topic: str
    stream: int

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "stream": self.stream}


@dataclass(frozen=True)
class JobDocument:
    job_id: str
    execution_id: str
    epn: str
    stream: int
    mode: str
    envelope: dict[str, Any]
    package_size: int
    package_sha256: str
    block_size: int
    block_count: int
    window: int
    url: str | None = None
    url_expires: str | None = None
    stall_timeout: int = 120
    group: Group | None = None  # block mode: the group to follow (absent: unicast only)
    pace_ms: int = 0  # block mode: the cloud paces, bursts of blocks may come this far apart (absent: 0)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": 1, "type": "job", "job_id": self.job_id, "execution_id": self.execution_id,
            "epn": self.epn, "stream": self.stream, "mode": self.mode, "envelope": self.envelope,
            "package_size": self.package_size, "package_sha256": self.package_sha256,
            "block_size": self.block_size, "block_count": self.block_count, "window": self.window,
            "url": self.url, "url_expires": self.url_expires, "stall_timeout": self.stall_timeout,
        }
        if self.group is not None:  # absent, not null, so a unicast document is byte for byte as before
            body["group"] = self.group.to_dict()
        if self.pace_ms:  # absent when not paced, so the document is byte for byte as before
            body["pace_ms"] = self.pace_ms
        return body


@dataclass(frozen=True)
class Cancel:
    execution_id: str


@dataclass(frozen=True)
class Status:
    execution_id: str
    state: str
    step: str | None = None
    reason: str | None = None
    seq: int = 0
    progress: int | None = None  # blocks held, for information only
    group: int | None = None  # `g`: the group stream, on a DOWNLOADING status of a device that follows it


@dataclass(frozen=True)
class Inventory:
    agent_version: str
    model: str
    apps: dict[str, str] = field(default_factory=dict)
    channel: str | None = None  # automatic updates: the release channel the device follows
    auto: tuple[str, ...] = ()  # the apps (at most 8) it installs releases of automatically


CHANNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MAX_AUTO_APPS = 8


@dataclass(frozen=True)
class UrlRefresh:
    execution_id: str


def encode(message: JobDocument | Cancel | Status | Inventory | UrlRefresh) -> bytes:
    if isinstance(message, JobDocument):
        return canonical_json(message.to_dict())
    if isinstance(message, Cancel):
        return canonical_json({"v": 1, "type": "cancel", "execution_id": message.execution_id})
    if isinstance(message, Status):
        body: dict[str, Any] = {"v": 1, "type": "status", "x": message.execution_id, "state": message.state,
                                "seq": message.seq}
        for key, value in (("step", message.step), ("reason", message.reason), ("progress", message.progress),
                           ("g", message.group)):
            if value is not None:
                body[key] = value
        return canonical_json(body)
    if isinstance(message, Inventory):
        inventory: dict[str, Any] = {"v": 1, "type": "inventory", "agent_version": message.agent_version,
                                     "model": message.model, "apps": dict(message.apps)}
        if message.channel is not None:  # both absent for a device without automatic updates
            inventory.update(channel=message.channel, auto=list(message.auto))
        return canonical_json(inventory)
    return canonical_json({"v": 1, "type": "url", "x": message.execution_id})


def decode(
    data: bytes, *, max_bytes: int = MAX_JOB_DOCUMENT, max_depth: int = MAX_DEPTH
) -> JobDocument | Cancel | Status | Inventory | UrlRefresh:
    """The typed message; size and nesting are bounded before parsing (device-to-cloud messages go
    through `decode_device`, with the tighter device limits)."""
    d = parse_json(data, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(d, dict) or d.get("v") != 1:
        raise MalformedError("message must be a JSON object with \"v\": 1")
    kind = d.get("type")
    if kind == "job":
        return _job(d)
    if kind == "cancel":
        return Cancel(_text(d, "execution_id", 64))
    if kind == "status":
        state = d.get("state")
        if state not in DEVICE_STATES:
            raise MalformedError(f"field 'state' must be one of {', '.join(DEVICE_STATES)}")
        step = d.get("step")
        if step is not None and step not in STEPS:
            raise MalformedError(f"field 'step' must be one of {', '.join(STEPS)}")
        reason = d.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 1024):
            raise MalformedError("field 'reason' must be a string of at most 1024 characters")
        progress = d.get("progress")
        if progress is not None:
            progress = _nat(d, "progress", MAX_BLOCKS)
        group = _nat(d, "g", MAX_STREAM) if "g" in d else None
        return Status(_text(d, "x", 64), state, step, reason, _nat(d, "seq", 2**53), progress, group)
    if kind == "inventory":
        apps = d.get("apps")
        if not isinstance(apps, dict) or len(apps) > 64:
            raise MalformedError("field 'apps' must be an object of at most 64 app: version pairs")
        for name, version in apps.items():
            check_app(name)
            Version.parse(version)
        agent_version = d.get("agent_version")
        Version.parse(agent_version)
        channel, auto = d.get("channel"), d.get("auto", [])
        if channel is not None and (not isinstance(channel, str) or not CHANNEL.fullmatch(channel)):
            raise MalformedError(f"field 'channel' must match {CHANNEL.pattern}")
        if not isinstance(auto, list) or len(auto) > MAX_AUTO_APPS or (auto and channel is None):
            raise MalformedError(f"field 'auto' must list at most {MAX_AUTO_APPS} app names, with a channel")
        for name in auto:
            check_app(name)
        return Inventory(str(agent_version), check_model(d.get("model")), dict(apps), channel, tuple(auto))
    if kind == "url":
        return UrlRefresh(_text(d, "x", 64))
    raise MalformedError(f"unknown message type {str(kind)[:30]!r}")


def decode_device(data: bytes) -> Status | Inventory | UrlRefresh:
    """A device-to-cloud JSON message (status, inventory or URL refresh): at most MAX_STATUS_MESSAGE
    bytes and wire.MAX_DEVICE_JSON_DEPTH levels of nesting, both checked before parsing; a job document
    or cancel (cloud-to-device types) raises MalformedError like any other malformed input."""
    decoded = decode(data, max_bytes=MAX_STATUS_MESSAGE, max_depth=MAX_DEVICE_JSON_DEPTH)
    if not isinstance(decoded, Status | Inventory | UrlRefresh):
        raise MalformedError("a device may send only status, inventory and url messages")
    return decoded


def _text(d: dict[str, Any], key: str, max_len: int) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise MalformedError(f"field {key!r} must be a string of 1..{max_len} characters")
    return value


def _nat(d: dict[str, Any], key: str, high: int) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise MalformedError(f"field {key!r} must be an integer in 0..{high}")
    return value


def _job(d: dict[str, Any]) -> JobDocument:
    mode = d.get("mode")
    if mode not in MODES:
        raise MalformedError("field 'mode' must be 'block' or 'url'")
    envelope = d.get("envelope")
    if not isinstance(envelope, dict):
        raise MalformedError("field 'envelope' must be the signed manifest envelope object")
    url = d.get("url")
    if mode == "url" and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
        raise MalformedError("field 'url' must be an http(s) URL in url mode")
    sha = _text(d, "package_sha256", 64)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise MalformedError("field 'package_sha256' must be 64 lowercase hex characters")
    try:
        block_size = check_block_size(d.get("block_size"))
    except MalformedError as err:
        raise MalformedError(f"field 'block_size': {err.reason}") from err
    return JobDocument(
        job_id=_text(d, "job_id", 64),
        execution_id=_text(d, "execution_id", 64),
        epn=check_epn(d.get("epn")),
        stream=_nat(d, "stream", MAX_STREAM),
        mode=mode,
        envelope=envelope,
        package_size=_nat(d, "package_size", 4 << 30),
        package_sha256=sha,
        block_size=block_size,
        block_count=_nat(d, "block_count", MAX_BLOCKS),
        window=_nat(d, "window", 1024),
        url=url if isinstance(url, str) else None,
        url_expires=d.get("url_expires") if isinstance(d.get("url_expires"), str) else None,
        stall_timeout=_nat(d, "stall_timeout", 86400),
        group=_group(d.get("group")) if mode == "block" else None,
        pace_ms=_nat(d, "pace_ms", MAX_PACE_MS) if mode == "block" and d.get("pace_ms") is not None else 0,
    )


def _group(value: Any) -> Group | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedError("field 'group' must be an object {\"topic\", \"stream\"} or absent")
    topic = value.get("topic")
    if not isinstance(topic, str) or topics.parse_group_topic(topic) is None:
        raise MalformedError("field 'group.topic' must be ota/g/{model}/{group}/blk")
    return Group(topic, _nat(value, "stream", MAX_STREAM))
