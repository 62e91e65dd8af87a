"""One simulated device's protocol logic (docs/protocol.md, block mode), pure: no sockets, no clock of its own.

A `Device` takes job documents, cancels and block frames (`on_message`) and timer ticks (`tick(now)`),
and publishes through the `send(leaf, payload)` it is given. It does what sections 4 and 7 ask of an
agent in block mode: strict parsing (otaformat.messages / otaformat.wire), the frame checks of 4.3 in
their order, a bitmap of held blocks, acks by the agent's own policy (agent.acks.AckPolicy: window/2 new
blocks, completion, 50 ms idle), a `get` for every missing block on accepting and after 1 s without a
new block (doubling to 8 s), the stall budget, statuses with an increasing `seq`
(IN_PROGRESS DOWNLOADING -> IN_PROGRESS VERIFYING -> SUCCEEDED, or FAILED with a reason) and an
inventory on connect and after every finished execution; a finished execution's document is answered
with its final status again. Group delivery (section 15, a job document with a `group` object): the
device subscribes to the group topic before its DOWNLOADING status, adds `"g": group stream` to that
status and to every ack and `get`, takes frames on that topic with the group's stream like its own,
goes back to unicast when the document comes again without `group`, and unsubscribes when the
download ends.

What it does not do: keep the package. Blocks are hashed in order into a running SHA-256; blocks
that arrive ahead of the hashed prefix wait in a small buffer (at most about one window), so a device
costs a bitmap and a few KB, and the final hash is checked against `package_sha256`. It does not
check the envelope's signature (every simulated device would check the same bytes; the real agent's
checks are tested elsewhere), install anything, persist anything or support URL mode (a URL-mode
document is answered FAILED).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.acks import IDLE_SECONDS, AckPolicy, paced_idle, paced_repair
from otaformat import messages, wire
from otaformat.canonical import canonical_json
from otaformat.errors import MalformedError

from .group import GroupInfo, GroupRefused, parse_group

Send = Callable[[str, bytes], None]
GET_FIRST, GET_MAX = 1.0, 8.0
STALL_BUDGET = 120.0


@dataclass
class Counters:
    frames_own: int = 0  # new blocks taken from ota/{epn}/blk
    frames_group: int = 0  # new blocks taken from the group topic
    duplicates: int = 0
    dropped: int = 0  # frames failing a check of 4.3
    acks: int = 0
    gets: int = 0
    statuses: int = 0
    inventories: int = 0
    job_documents: int = 0


@dataclass
class Download:
    doc: messages.JobDocument
    group: GroupInfo | None
    started: float
    held: bytearray = field(init=False)
    count: int = 0
    contiguous: int = 0
    hashed: int = 0  # blocks 0..hashed-1 are in the running hash
    waiting: dict[int, bytes] = field(default_factory=dict)  # held blocks beyond the hashed prefix
    sha: Any = field(default_factory=hashlib.sha256)
    policy: AckPolicy = field(init=False)
    last_new: float = 0.0
    last_get: float = 0.0
    get_interval: float = GET_FIRST
    get_first: float = GET_FIRST  # a paced job's (docs/protocol.md section 7) is longer

    def __post_init__(self) -> None:
        self.held = bytearray(self.doc.block_count)
        self.policy = AckPolicy(self.doc.window, idle=paced_idle(IDLE_SECONDS, self.doc.pace_ms))  # as the agent
        self.get_interval = self.get_first = paced_repair(GET_FIRST, self.doc.pace_ms)
        self.last_new = self.started

    def missing(self) -> list[int]:
        return [i for i in range(self.contiguous, self.doc.block_count) if not self.held[i]]

    def expected_length(self, index: int) -> int:
        doc = self.doc
        return doc.package_size - doc.block_size * (doc.block_count - 1) if index == doc.block_count - 1 \
            else doc.block_size


class Device:
    def __init__(self, epn: str, model: str, send: Send, *, apps: dict[str, str] | None = None,
                 subscribe: Callable[[str], None] | None = None,
                 unsubscribe: Callable[[str], None] | None = None, stall_budget: float = STALL_BUDGET) -> None:
        self.epn, self.model, self.send = epn, model, send
        self.stall_budget = stall_budget  # the agent's limits.stall_budget (reference agent: 120 s)
        self.subscribe = subscribe or (lambda _topic: None)
        self.unsubscribe = unsubscribe or (lambda _topic: None)
        self.own_blk = f"ota/{epn}/blk"
        self.apps = dict(apps or {})
        self.seq = 0
        self.active: Download | None = None
        self.finished: dict[str, tuple[str, str | None]] = {}
        self.outcomes: dict[str, dict[str, Any]] = {}  # execution id -> state, reason, at, hash_ok, group
        self.unreported: list[str] = []  # finished execution ids the runner has not collected yet
        self.counters = Counters()

    # -- outgoing -----------------------------------------------------------------------------------

    def _status(self, execution_id: str, state: str, step: str | None = None, reason: str | None = None,
                progress: int | None = None, group: GroupInfo | None = None) -> None:
        self.seq += 1
        self.counters.statuses += 1
        self.send("status", _with_g(messages.encode(messages.Status(execution_id, state, step, reason, self.seq,
                                                                    progress)), group))

    def inventory(self) -> None:
        self.counters.inventories += 1
        self.send("status", messages.encode(messages.Inventory("1.0.0", self.model, dict(self.apps))))

    def _ack(self, d: Download) -> None:
        have = (i for i in range(d.contiguous, d.doc.block_count) if d.held[i])
        ack = wire.make_ack(d.doc.execution_id, d.doc.stream, [*range(d.contiguous), *have], d.doc.block_count)
        d.policy.acked()
        self.counters.acks += 1
        self.send("ack", _with_g(wire.encode_ack(ack), d.group))

    def _get(self, d: Download, now: float) -> None:
        missing = d.missing()[: wire.MAX_BITMAP_BYTES * 8]
        if not missing:
            return
        d.last_get = now
        self.counters.gets += 1
        request = wire.make_request(d.doc.execution_id, d.doc.stream, missing)
        self.send("get", _with_g(wire.encode_request(request), d.group))

    # -- incoming -----------------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, now: float) -> None:
        leaf = topic.rsplit("/", 1)[-1]
        if topic == self.own_blk:
            self.on_frame(payload, now)
        elif leaf == "blk":  # a group topic: only the one the current download follows
            d = self.active
            if d is not None and d.group is not None and topic == d.group.topic:
                self.on_frame(payload, now, group=True)
            else:
                self.counters.dropped += 1
        elif leaf == "job":
            self.on_job(payload, now)
        # ota/{epn}/cmd: commands are not simulated (an agent that does not support them ignores them)

    def on_job(self, payload: bytes, now: float) -> None:
        try:
            message = messages.decode(payload)
            raw = json.loads(payload)
        except (MalformedError, ValueError):
            return
        if isinstance(message, messages.Cancel):
            d = self.active
            if d is not None and d.doc.execution_id == message.execution_id:
                self._finish(d, "FAILED", "canceled by the cloud before install", now)
            return
        if not isinstance(message, messages.JobDocument):
            return
        self.counters.job_documents += 1
        doc = message
        if doc.execution_id in self.finished:
            state, reason = self.finished[doc.execution_id]
            self._status(doc.execution_id, state, reason=reason)
            return
        if self.active is not None:
            d = self.active
            if d.doc.execution_id == doc.execution_id:
                if d.group is not None and raw.get("group") is None:  # moved to unicast (15.4)
                    self.unsubscribe(d.group.topic)
                    d.group = None
                if now - d.last_get >= 1.0:
                    d.last_new = now  # the stall clock restarts
                    self._get(d, now)
            return  # a new job while busy: ignored; the inventory after this one brings it back
        if doc.epn != self.epn:
            self._reject(doc.execution_id, "malformed: the job document names another device")
            return
        if doc.mode != "block":
            self._reject(doc.execution_id, "url mode is not simulated", state="FAILED")
            return
        if doc.block_count != wire.block_count(doc.package_size, doc.block_size):
            self._reject(doc.execution_id, "malformed: block_count does not match package_size / block_size")
            return
        try:
            group = parse_group(raw.get("group"), self.model)
        except GroupRefused as err:
            self._reject(doc.execution_id, str(err))
            return
        d = Download(doc, group, now)
        self.active = d
        if group is not None:  # the SUBSCRIBE goes out before the status and the get (same connection, in order)
            self.subscribe(group.topic)
        self._status(doc.execution_id, "IN_PROGRESS", "DOWNLOADING", progress=0, group=group)
        self._get(d, now)

    def _reject(self, execution_id: str, reason: str, state: str = "REJECTED") -> None:
        self.finished[execution_id] = (state, reason)
        self._status(execution_id, state, reason=reason)
        self.inventory()

    def on_frame(self, payload: bytes, now: float, *, group: bool = False) -> None:
        d = self.active
        if d is None:
            return
        doc = d.doc
        if len(payload) > wire.FRAME_HEADER.size + doc.block_size:
            self.counters.dropped += 1
            return
        try:
            frame = wire.decode_frame(payload, max_block=doc.block_size)
        except MalformedError:
            self.counters.dropped += 1
            return
        stream = d.group.stream if group and d.group is not None else doc.stream
        if frame.stream != stream or frame.total != doc.block_count or \
                len(frame.data) != d.expected_length(frame.index):
            self.counters.dropped += 1
            return
        new = not d.held[frame.index]
        if new:
            self._take(d, frame.index, frame.data)
            if group:
                self.counters.frames_group += 1
            else:
                self.counters.frames_own += 1
            d.last_new = now
            d.get_interval = d.get_first
        else:
            self.counters.duplicates += 1
        complete = d.count == doc.block_count
        if d.policy.on_block(now, new=new, complete=complete):
            self._ack(d)
        if complete and new:
            self._complete(d, now)

    def _take(self, d: Download, index: int, data: bytes) -> None:
        d.held[index] = 1
        d.count += 1
        while d.contiguous < d.doc.block_count and d.held[d.contiguous]:
            d.contiguous += 1
        if index == d.hashed:
            d.sha.update(data)
            d.hashed += 1
            while d.hashed in d.waiting:
                d.sha.update(d.waiting.pop(d.hashed))
                d.hashed += 1
        else:
            d.waiting[index] = data

    def _complete(self, d: Download, now: float) -> None:
        doc = d.doc
        self._status(doc.execution_id, "IN_PROGRESS", "VERIFYING", progress=doc.block_count)
        if d.hashed == doc.block_count and d.sha.hexdigest() == doc.package_sha256:
            manifest = doc.envelope.get("manifest", {}) if isinstance(doc.envelope, dict) else {}
            if isinstance(manifest.get("app"), str) and isinstance(manifest.get("version"), str):
                self.apps[manifest["app"]] = manifest["version"]
            self._finish(d, "SUCCEEDED", None, now, hash_ok=True)
        else:
            self._finish(d, "FAILED", "hash: the package file's SHA-256 differs from the job's (corrupted transfer)",
                         now, hash_ok=False)

    def _finish(self, d: Download, state: str, reason: str | None, now: float, *, hash_ok: bool = False) -> None:
        execution_id = d.doc.execution_id
        self.active = None
        if d.group is not None:
            self.unsubscribe(d.group.topic)
        self.finished[execution_id] = (state, reason)
        self.outcomes[execution_id] = {"state": state, "reason": reason, "at": now, "hash_ok": hash_ok,
                                       "started": d.started, "group": d.group is not None}
        self.unreported.append(execution_id)
        self._status(execution_id, state, reason=reason)
        self.inventory()

    # -- time ---------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Timers: the idle ack, the repair `get` with its backoff, the stall budget."""
        d = self.active
        if d is None:
            return
        if d.policy.idle_due(now):
            self._ack(d)
        budget = min(self.stall_budget, float(d.doc.stall_timeout or self.stall_budget))
        idle = now - d.last_new
        if idle >= budget:
            self._finish(d, "FAILED", f"download stalled: no new data for {budget:.0f} s "
                                      f"({d.count}/{d.doc.block_count} blocks)", now)
        elif idle >= d.get_interval and now - d.last_get >= d.get_interval:
            self._get(d, now)
            d.get_interval = min(GET_MAX, d.get_interval * 2)


def _with_g(message: bytes, group: GroupInfo | None) -> bytes:
    """The message with `"g": group stream` added (section 15.1), unchanged without a group."""
    if group is None:
        return message
    body = json.loads(message)
    body["g"] = group.stream
    return canonical_json(body)
