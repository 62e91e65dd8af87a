"""One simulator process: many device sessions (bench.fleetsim.device over bench.fleetsim.mqtt) on one asyncio loop.

`run_worker` connects every identity it is given to the broker with its own certificate (mutual TLS,
client id = EPN, persistent session, TCP_NODELAY), a bounded number of handshakes at a time,
subscribes to `ota/{epn}/job`, `ota/{epn}/blk` and `ota/{epn}/cmd` (and to a group topic when a job
document names one), publishes the inventory, and then lets the devices run. A timer task ticks every
device with a download in progress every 50 ms (the ack idle rule's resolution). It reports to the
parent through a multiprocessing queue: ("connected", n), ("done", epn, outcome), ("lost", epn,
reason), and at the end ("summary", counters). It stops when the parent sets `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import ssl
import time
from dataclasses import asdict, dataclass
from typing import Any

from otaformat import topics

from .device import Device
from .mqtt import MqttError, Session

TICK = 0.05


@dataclass(frozen=True)
class WorkerSpec:
    host: str
    port: int
    ca_file: str
    identities: list[tuple[str, str, str]]  # (epn, cert file, key file)
    model: str
    apps: dict[str, str]
    handshakes: int = 32  # TLS handshakes in flight at once
    stall_budget: float = 120.0  # each device's limits.stall_budget


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _context(spec: WorkerSpec, cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(spec.ca_file)
    context.load_cert_chain(cert, key)
    return context


class Worker:
    def __init__(self, spec: WorkerSpec, events: Any, stop: Any) -> None:
        self.spec, self.events, self.stop = spec, events, stop
        self.devices: list[Device] = []
        self.sessions: list[Session] = []
        self.refused_subscriptions = 0  # group topics the broker denied (SUBACK 0x80)

    def _make(self, epn: str) -> tuple[Device, Session]:
        holder: dict[str, Any] = {}
        names = {leaf: topics.topic(epn, leaf) for leaf in ("ack", "get", "status")}

        def send(leaf: str, payload: bytes) -> None:
            holder["session"].publish(names[leaf], payload)

        def subscribe(topic: str) -> None:
            def checked(suback: asyncio.Future[bytes]) -> None:
                if suback.cancelled() or suback.exception() is not None or any(c & 0x80 for c in suback.result()):
                    self.refused_subscriptions += 1

            holder["session"].subscribe_now([topic]).add_done_callback(checked)

        def unsubscribe(topic: str) -> None:
            holder["session"].unsubscribe_now([topic])

        device = Device(epn, self.spec.model, send, apps=self.spec.apps, subscribe=subscribe, unsubscribe=unsubscribe,
                        stall_budget=self.spec.stall_budget)
        session = Session(epn, lambda topic, payload: device.on_message(topic, payload, time.time()))
        holder["session"] = session
        return device, session

    async def _connect_one(self, gate: asyncio.Semaphore, epn: str, cert: str, key: str) -> None:
        device, session = self._make(epn)
        async with gate:
            for attempt in range(5):
                try:
                    await session.connect(self.spec.host, self.spec.port, _context(self.spec, cert, key))
                    await session.subscribe([topics.topic(epn, leaf) for leaf in ("job", "blk", "cmd")])
                    break
                except (TimeoutError, OSError, MqttError, ssl.SSLError) as err:
                    if attempt == 4:
                        self.events.put(("lost", epn, f"could not connect: {type(err).__name__}: {err}"))
                        return
                    await asyncio.sleep(0.5 * (attempt + 1))
        device.inventory()
        self.devices.append(device)
        self.sessions.append(session)
        assert session.closed is not None
        session.closed.add_done_callback(lambda f: self.events.put(("lost", epn, f.result())))

    async def _ticker(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(TICK)
            now = time.time()
            for device in self.devices:
                if device.active is not None:
                    device.tick(now)
                while device.unreported:
                    execution_id = device.unreported.pop()
                    self.events.put(("done", device.epn, {"execution_id": execution_id,
                                                          **device.outcomes[execution_id]}))

    async def main(self) -> None:
        raise_fd_limit()
        gate = asyncio.Semaphore(self.spec.handshakes)
        ticker = asyncio.get_running_loop().create_task(self._ticker())
        batch = 200
        for first in range(0, len(self.spec.identities), batch):
            group = self.spec.identities[first:first + batch]
            await asyncio.gather(*(self._connect_one(gate, *ident) for ident in group))
            self.events.put(("connected", len(group)))
        while not self.stop.is_set():
            await asyncio.sleep(0.2)
        await ticker
        totals: dict[str, int] = {}
        for device in self.devices:
            for name, value in asdict(device.counters).items():
                totals[name] = totals.get(name, 0) + value
        totals["mqtt_published"] = sum(s.published for s in self.sessions)
        totals["mqtt_received"] = sum(s.received for s in self.sessions)
        totals["pubacks"] = sum(s.acked for s in self.sessions)
        totals["refused_subscriptions"] = self.refused_subscriptions
        totals["group_max"] = max((d.counters.frames_group for d in self.devices), default=0)
        self.events.put(("summary", totals))
        await asyncio.gather(*(s.disconnect() for s in self.sessions), return_exceptions=True)


def run_worker(spec: WorkerSpec, events: Any, stop: Any) -> None:
    """Process entry point (multiprocessing)."""
    asyncio.run(Worker(spec, events, stop).main())
