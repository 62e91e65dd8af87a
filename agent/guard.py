"""The agent's generic guards: no exception wedges an execution, no state waits on the network forever.

`guarded(where, action)` runs one unit of work (a message handler, the timers, the synchronous steps).
An unexpected exception ends the current execution through the table: `FAULT` (or JOB_REFUSED while a job
document is being accepted, or COMMITTED when the commit was already persisted), with outcome FAILED
and a reason naming the state and the error. The new state is persisted like every other transition,
so a restart resumes the report, never the broken step. A fault outside any execution drops the input.

`check_stall()` is the stall budget of every state listed in machine.STALL: no progress for that long
while connected fires the state's stall event with outcome FAILED. Mixed into agent.runtime.Agent.
`crash_point` is the opposite, for the fault tests only: OTA_AGENT_CRASH_AT (docs/agent.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from .machine import STALL, Event, State

if TYPE_CHECKING:
    from .runtime import Agent

log = logging.getLogger("ota-agent")
MAX_FAULT_REASON = 512


def crash_point(spec: str | None) -> Callable[[str], None]:
    """OTA_AGENT_CRASH_AT=<checkpoint>[:<n>] kills the agent with SIGKILL the n-th time it passes there."""
    if not spec:
        return lambda name: None
    name, _, count = spec.partition(":")
    remaining = [int(count) if count.isdigit() else 1]

    def crash(point: str) -> None:
        if point == name:
            remaining[0] -= 1
            if remaining[0] <= 0:
                log.warning("crash checkpoint %s reached: killing myself", point)
                os.kill(os.getpid(), signal.SIGKILL)

    return crash


class Guard:
    def guarded(self: Agent, where: str, action: Callable[..., object], *args: object) -> bool:
        """Run action; False if it raised (the fault has then been handled)."""
        try:
            action(*args)
        except Exception as err:  # BaseException (SystemExit, KeyboardInterrupt, test crash hooks) passes
            log.exception("error while %s in %s", where, self.state)
            self.on_fault(where, err)
            return False
        return True

    def run_steps(self: Agent) -> None:
        """advance() under the guard; after a fault, the states it led to (rollback, report) run at once."""
        for _ in range(len(State)):  # each fault moves the machine on by the table: this is bounded
            if self.guarded("running steps", self.advance):
                return

    def on_fault(self: Agent, where: str, err: Exception) -> None:
        state = self.state
        reason = f"agent error while {where} in {state}: {type(err).__name__}: {err}"[:MAX_FAULT_REASON]
        with contextlib.suppress(Exception):
            self.close_download()
        if state == State.IDLE:
            job = self.job
            if job is None or job.execution_id in self.store.data["finished"]:
                self.count_drop("error")  # no execution to end: the input is dropped
                return
            self.fail(Event.JOB_REFUSED, "FAILED", reason)  # a job document was being accepted
            return
        if state == State.COMMANDING:  # the command ends FAILED; a second fault (reporting it) drops it
            record = self.store.data.get("command") or {}
            if record.get("outcome") is None and record:
                record["outcome"] = {"state": "FAILED", "reason": reason}
                self.store.save()
                return
            self.store.data["command"] = None
            self.fire(Event.FAULT)
            return
        if state == State.COMMITTING and self.store.data.get("state") == State.REPORTING.value:
            self.fire(Event.COMMITTED)  # the commit is persisted: what failed was clean-up, never roll back
            return
        outcome = self.store.data.get("outcome")
        if state == State.REPORTING:  # the outcome stands (it may be SUCCEEDED); it just cannot be sent now:
            if self.job is not None and outcome:  # remembered, it is repeated when the job document comes again
                self.store.remember_finished(self.job.execution_id, outcome)
            self.store.data.update(job=None, outcome=None, install=None)
            self.job, self.verified = None, None
        elif state == State.ROLLING_BACK and outcome:  # keep what went wrong first
            outcome["reason"] = f"{outcome.get('reason')}; then {reason}"[:MAX_FAULT_REASON]
        else:
            self.store.data["outcome"] = {"state": "FAILED", "reason": reason}
        self.fire(Event.FAULT)

    def check_stall(self: Agent) -> None:
        event = STALL.get(self.state)
        if event is None or not self.transport.connected:
            return
        budget = self.stall_budget
        if self.clock() - self.last_progress < budget:
            return
        reason = (self.stall_reason() if self.state == State.DOWNLOADING
                  else f"stalled in {self.state}: no progress for {budget:g} s")
        self.close_download()
        self.fail(event, "FAILED", reason)
