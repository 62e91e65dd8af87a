"""The simulated fleet from the parent's side: worker processes started, watched and stopped.

`SimFleet(identities, ...)` splits the identities over `processes` worker processes (spawned, each an
asyncio loop of bench.fleetsim.worker), collects their events in a thread (connections, finished
executions with their outcome, lost sessions) and, at `stop()`, their summed counters. It knows
nothing about the API or jobs: callers wait on `outcomes` (epn -> execution id -> outcome).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .register import Identity
from .worker import WorkerSpec, raise_fd_limit, run_worker


class SimFleet:
    def __init__(self, identities: list[Identity], ca_file: str, host: str, port: int, model: str, *,
                 processes: int = 2, apps: dict[str, str] | None = None, stall_budget: float = 120.0) -> None:
        raise_fd_limit()  # children inherit it
        self._context = multiprocessing.get_context("spawn")
        self.events: Any = self._context.Queue()
        self.stop_event: Any = self._context.Event()
        self.lock = threading.Lock()
        self.connected = 0
        self.outcomes: dict[str, dict[str, dict[str, Any]]] = {}
        self.lost: dict[str, str] = {}
        self.summaries: list[dict[str, int]] = []
        self._stopping = False
        shares = [identities[i::processes] for i in range(processes)]
        self.processes = [
            self._context.Process(target=run_worker, name=f"fleetsim-{n}", daemon=True, args=(
                WorkerSpec(host, port, ca_file, [(i.epn, i.cert, i.key) for i in share], model, dict(apps or {}),
                           stall_budget=stall_budget),
                self.events, self.stop_event))
            for n, share in enumerate(shares) if share]
        self._reader = threading.Thread(target=self._read, name="fleetsim-events", daemon=True)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def start(self) -> None:
        for process in self.processes:
            process.start()
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                if self._stopping and not any(p.is_alive() for p in self.processes):
                    return
                continue
            with self.lock:
                if event[0] == "connected":
                    self.connected += event[1]
                elif event[0] == "done":
                    self.outcomes.setdefault(event[1], {})[event[2]["execution_id"]] = event[2]
                elif event[0] == "lost" and not self._stopping:
                    self.lost[event[1]] = event[2]
                elif event[0] == "summary":
                    self.summaries.append(event[1])

    def wait(self, predicate: Callable[[], bool], timeout: float, *, every: float = 10.0,
             report: Callable[[], str] | None = None) -> bool:
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            if predicate():
                return True
            if any(not p.is_alive() for p in self.processes):
                raise RuntimeError("a simulator process died (see its output above)")
            if report is not None and time.monotonic() - last >= every:
                last = time.monotonic()
                print(f"  {report()}", flush=True)
            time.sleep(0.1)
        return predicate()

    def wait_connected(self, total: int, timeout: float) -> bool:
        return self.wait(lambda: self.connected + len(self.lost) >= total, timeout,
                         report=lambda: f"{self.connected}/{total} sessions connected")

    def finished(self, executions: dict[str, str]) -> dict[str, dict[str, Any]]:
        """epn -> outcome for the given execution ids (epn -> execution id) that finished on their device."""
        with self.lock:
            return {epn: self.outcomes[epn][x] for epn, x in executions.items()
                    if x in self.outcomes.get(epn, {})}

    def stop(self, timeout: float = 60.0) -> dict[str, int]:
        """Stop the workers; their counters summed."""
        self._stopping = True
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.summaries) < len(self.processes):
            time.sleep(0.1)
        for process in self.processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        self._reader.join(timeout=5)
        totals: dict[str, int] = {}
        for summary in self.summaries:
            for name, value in summary.items():
                totals[name] = max(totals.get(name, 0), value) if name == "group_max" else \
                    totals.get(name, 0) + value
        return totals
