"""A scripted cloud for end-to-end agent tests: a paho client that plays the block sender.

It republishes the job document on every inventory (as the cloud does), starts sending on the
agent's first `get`, keeps at most `window` unacknowledged blocks in flight, sends more on each ack,
resends what a `get` asks for, and resends unacknowledged blocks after `sweep` seconds without ack
progress (the sweeper). Faults are scripted per block index: drop the first copy, duplicate, corrupt
(a bad-CRC copy before the good one), plus extra junk frames and a reordered send order.
"""

from __future__ import annotations

import queue
import random
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from otaformat import messages, wire
from otaformat.messages import JobDocument

from .pkgtools import frames


@dataclass
class Faults:
    drop: set[int] = field(default_factory=set)
    duplicate: set[int] = field(default_factory=set)
    corrupt: set[int] = field(default_factory=set)
    junk: list[bytes] = field(default_factory=list)  # sent once after the first block
    shuffle_seed: int | None = None
    stop_after: int | None = None  # go silent after this many sends (stall tests)


@dataclass
class Result:
    statuses: list[messages.Status] = field(default_factory=list)
    inventories: list[messages.Inventory] = field(default_factory=list)
    acks: int = 0
    gets: int = 0
    sent: int = 0
    started_at: float = 0.0  # first get (start signal)
    completed_at: float = 0.0  # ack covering every block

    @property
    def transfer_seconds(self) -> float:
        return self.completed_at - self.started_at

    def terminal(self, execution_id: str) -> list[str]:
        return [s.state for s in self.statuses if s.execution_id == execution_id and s.state != "IN_PROGRESS"]


class Sender:
    def __init__(self, port: int, epn: str = "dev-1", tls: ssl.SSLContext | None = None) -> None:
        self.epn = epn
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cloud-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(f"ota/{epn}/{leaf}", 1) for leaf in ("ack", "get", "status")])
        self.client.on_message = lambda c, u, m: self.inbox.put((m.topic.rsplit("/", 1)[-1], bytes(m.payload)))
        self.client.on_socket_open = lambda c, u, s: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.reconnect_delay_set(0.2, 2)
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.result = Result()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, leaf: str, payload: bytes) -> None:
        self.client.publish(f"ota/{self.epn}/{leaf}", payload, qos=1)

    def next_inventory(self, timeout: float = 30.0) -> messages.Inventory | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                leaf, payload = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if leaf == "status":
                msg = messages.decode(payload)
                if isinstance(msg, messages.Inventory):
                    return msg
        return None

    def serve(self, job: JobDocument, package: bytes, faults: Faults | None = None, *, timeout: float = 120.0,
              sweep: float = 2.0, done_states: tuple[str, ...] = ("SUCCEEDED", "FAILED", "REJECTED"),
              on_tick=None) -> Result:
        """Run the transfer until the agent reports a terminal state for this execution (or timeout)."""
        faults = faults or Faults()
        fs = frames(job, package)
        order = list(range(job.block_count))
        if faults.shuffle_seed is not None:
            random.Random(faults.shuffle_seed).shuffle(order)
        pending: list[int] = []
        acked: set[int] = set()
        in_flight: set[int] = set()
        started = False
        junk_sent = False
        last_progress = time.monotonic()
        r = self.result
        self.publish("job", messages.encode(job))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if on_tick is not None:
                on_tick(r)
            try:
                leaf, payload = self.inbox.get(timeout=0.05)
            except queue.Empty:
                leaf, payload = "", b""
            if leaf == "status":
                msg = messages.decode(payload)
                if isinstance(msg, messages.Inventory):
                    r.inventories.append(msg)
                    self.publish("job", messages.encode(job))  # republish pending job documents
                elif isinstance(msg, messages.Status):
                    r.statuses.append(msg)
                    if msg.execution_id == job.execution_id and msg.state in done_states:
                        return r
            elif leaf == "ack":
                r.acks += 1
                got = wire.decode_ack(payload).received(job.block_count)
                if got - acked:
                    last_progress = time.monotonic()
                acked |= got
                in_flight -= got
                if len(acked) == job.block_count and not r.completed_at:
                    r.completed_at = time.monotonic()
            elif leaf == "get":
                r.gets += 1
                try:
                    wanted = wire.decode_request(payload).wanted(job.block_count)
                except Exception:  # a UrlRefresh or junk: not for this sender
                    wanted = []
                if not started:
                    started = True
                    r.started_at = time.monotonic()
                    pending = [i for i in order if i in set(wanted)]
                else:
                    for i in wanted:
                        in_flight.discard(i)
                        if i not in pending:
                            pending.append(i)
            if started and in_flight and time.monotonic() - last_progress > sweep:  # the sweeper
                pending.extend(sorted(in_flight - set(pending)))
                in_flight.clear()
                last_progress = time.monotonic()
            while started and pending and len(in_flight) < job.window:
                if faults.stop_after is not None and r.sent >= faults.stop_after:
                    pending.clear()
                    break
                i = pending.pop(0)
                in_flight.add(i)
                r.sent += 1
                if i in faults.drop:
                    faults.drop.discard(i)
                    continue
                if i in faults.corrupt:
                    faults.corrupt.discard(i)
                    self.publish("blk", fs[i][:-1] + bytes([fs[i][-1] ^ 0x55]))
                self.publish("blk", fs[i])
                if i in faults.duplicate:
                    self.publish("blk", fs[i])
                if not junk_sent:
                    junk_sent = True
                    for j in faults.junk:
                        self.publish("blk", j)
        return r
