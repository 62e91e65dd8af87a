"""The COMMANDING state: signed remote commands (docs/protocol.md, "Remote commands").

A command message is checked completely before anything runs (otaformat.commands.check_command: a
trusted signature, not expired, for this device or its model, its type in `[commands] allow`, its id
never seen before). A refusal is reported REJECTED with the reason; nothing runs. While an update is in
progress an accepted command is reported DELIVERED and left for later: the cloud sends it again when the
agent's next inventory arrives (after the update). Otherwise its id is persisted as seen (with its
expiry, after which it is forgotten: an expired command is refused anyway) together with the command in
one atomic write, the machine enters COMMANDING and RUNNING is reported; only then does it run.

- run-script: the script from the signed command, in its own process group, killed with the group at
  min(command timeout, limits) seconds; output kept in data_dir/logs and returned bounded (head and
  tail, the cut said in the text, `truncated` true).
- collect-logs: the last `max_bytes` of the configured log file (or the newest script log), bounded.
- reboot, restart-agent, restart-app: the configured hook (argv). A reboot or agent restart that works
  kills this agent: the command stays persisted as running and the agent, back, reports SUCCEEDED. A
  hook that fails reports FAILED; one that exits 0 but leaves the agent running for `restart_grace` s
  reports FAILED too. Any other command interrupted by a restart reports FAILED.
Mixed into agent.runtime.Agent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from typing import TYPE_CHECKING, Any

from otaformat import commands as oc
from otaformat.errors import FormatError
from otaformat.manifest import parse_timestamp

from .machine import Event, State
from .store import atomic_write

if TYPE_CHECKING:
    from .runtime import Agent

log = logging.getLogger("ota-agent")
RESTARTS = ("reboot", "restart-agent")
MAX_SEEN = 4096
REPORT_WAIT = 5.0


def _boot_id() -> str | None:
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()
    return None


class Commanding:
    # -- receiving ----------------------------------------------------------------------------------

    def on_command_message(self: Agent, payload: bytes) -> None:
        try:
            envelope = oc.decode_command_message(payload)
        except (FormatError, ValueError, TypeError, RecursionError) as err:
            log.warning("dropping malformed command message: %s", err)
            self.count_drop("malformed-cmd")
            return
        body = envelope.get("command")
        claimed = body.get("id") if isinstance(body, dict) else None
        self.prune_seen()
        try:
            command = oc.check_command(envelope, self.cfg.trusted_keys, now=self.wall(), epn=self.cfg.epn,
                                       model=self.cfg.model, allowed=self.cfg.command_allow,
                                       seen=self.store.data["commands_seen"])
        except FormatError as refusal:
            log.warning("command %s refused (%s): %s", str(claimed)[:64], refusal.code, refusal.reason)
            if isinstance(claimed, str) and oc._COMMAND_ID.fullmatch(claimed):
                self.report_command(claimed, "REJECTED", reason=f"{refusal.code}: {refusal.reason}")
            else:
                self.count_drop("refused-cmd")
            return
        if self.state != State.IDLE:  # the cloud sends it again on the inventory that follows the update
            self.report_command(command.command_id, "DELIVERED", reason=f"waiting: the agent is {self.state}")
            return
        self.store.data["commands_seen"][command.command_id] = command.expires
        self.store.data["command"] = {"envelope": envelope, "phase": "accepted", "outcome": None}
        self.fire(Event.COMMAND_ACCEPTED)  # seen id, command and state in one atomic write, before it runs
        self.report_command(command.command_id, "RUNNING")

    def prune_seen(self: Agent) -> None:
        """Forget the ids of commands that have expired (a replay of one is refused as expired)."""
        now = self.wall()
        seen: dict[str, str] = self.store.data["commands_seen"]
        for cid, expires in list(seen.items()):
            with contextlib.suppress(FormatError, TypeError):
                if parse_timestamp(expires) < now:
                    del seen[cid]
        while len(seen) > MAX_SEEN:
            seen.pop(next(iter(seen)))

    def report_command(self: Agent, command_id: str, state: str, *, wait: float = 0.0, **fields: Any) -> bool:
        seq = self.store.next_seq()
        self.store.save()
        result = oc.CommandResult(command_id, state, seq, fields.get("exit_code"),
                                  (fields.get("reason") or None) and str(fields["reason"])[:oc.MAX_REASON],
                                  fields.get("output"), bool(fields.get("truncated", False)))
        return self.publish("cmd/result", oc.encode_result(result), wait=wait)

    # -- COMMANDING ---------------------------------------------------------------------------------

    def step_commanding(self: Agent) -> Event | None:
        record = self.store.data.get("command")
        if not record:
            return Event.COMMAND_DONE
        command = oc.Command.from_dict(record["envelope"]["command"])  # verified when it was accepted
        if record.get("outcome") is None:
            outcome = self.command_outcome(command, record)
            if outcome is None:
                return None  # waiting for the service manager to restart us
            record["outcome"] = outcome
            self.store.save()
        if not self.transport.connected:
            return None
        if not self.report_command(command.command_id, wait=REPORT_WAIT, **record["outcome"]):
            return None
        self.store.data["command"] = None
        return Event.COMMAND_DONE

    def command_outcome(self: Agent, command: oc.Command, record: dict[str, Any]) -> dict[str, Any] | None:
        phase = record.get("phase")
        if phase == "hook-done" and record.get("instance") == self.instance:
            waited = self.clock() - float(record.get("hook_at", self.clock()))
            if waited < self.cfg.restart_grace:
                return None
            return {"state": "FAILED", "reason": f"the {command.type} hook exited 0 but the agent was not restarted "
                                                  f"within {self.cfg.restart_grace:g} s"}
        if phase in ("running", "hook-done"):  # persisted by an earlier run of the agent: we were restarted
            if command.type in RESTARTS:
                booted = record.get("boot_id") != _boot_id()
                what = "device rebooted" if command.type == "reboot" else "agent restarted"
                return {"state": "SUCCEEDED", "reason": f"{what}; the agent is back"
                        + (" (new boot id)" if booted else " (same boot id)")}
            return {"state": "FAILED", "reason": f"the agent restarted while {command.type} ran"}
        record.update(phase="running", boot_id=_boot_id(), instance=self.instance)
        self.store.save()  # a restart from here on is reported as such
        if command.type == "run-script":
            return self.run_command_script(command)
        if command.type == "collect-logs":
            return self.collect_logs(command)
        outcome = self.run_hook(command)
        if outcome is None:  # reboot / restart-agent hook accepted: we should be stopped soon
            record.update(phase="hook-done", hook_at=self.clock())
            self.store.save()
        return outcome

    # -- the command types --------------------------------------------------------------------------

    def command_env(self: Agent, command: oc.Command) -> dict[str, str]:
        return {**os.environ, "OTA_COMMAND_ID": command.command_id, "OTA_COMMAND_TYPE": command.type,
                "OTA_AGENT_PID": str(os.getpid()), "OTA_DATA_DIR": self.cfg.data_dir, "OTA_EPN": self.cfg.epn,
                "OTA_APP": command.arg("app") or ""}

    def run_command_script(self: Agent, command: oc.Command) -> dict[str, Any]:
        assert command.script is not None
        directory = os.path.join(self.cfg.data_dir, "cmd")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        script = os.path.join(directory, command.command_id)
        atomic_write(script, command.script.encode(), mode=0o700)
        argv = [script] if command.script.startswith("#!") else ["/bin/sh", script]
        try:
            return self.run_bounded(command, argv, os.path.join(directory, ".."))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(script)

    def run_hook(self: Agent, command: oc.Command) -> dict[str, Any] | None:
        app = command.arg("app") or ""
        argv = [part.replace("{app}", app) for part in self.cfg.command_hooks.get(command.type, ())]
        if not argv:
            return {"state": "FAILED", "reason": f"no {command.type} hook is configured"}
        outcome = self.run_bounded(command, argv, self.cfg.data_dir)
        if command.type in RESTARTS and outcome["state"] == "SUCCEEDED":
            return None
        return outcome

    def run_bounded(self: Agent, command: oc.Command, argv: list[str], cwd: str) -> dict[str, Any]:
        """Run argv in its own process group with the timeout; its output (stdout+stderr) bounded."""
        timeout = min(float(command.timeout), self.cfg.script_timeout)
        logs = os.path.join(self.cfg.data_dir, "logs")
        os.makedirs(logs, mode=0o700, exist_ok=True)
        log_path = os.path.join(logs, f"{command.command_id}.log")
        with open(log_path, "wb") as out:
            try:
                proc = subprocess.Popen(argv, cwd=os.path.realpath(cwd), env=self.command_env(command),
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as err:
                return {"state": "FAILED", "reason": f"{command.type} cannot be started: {err.strerror}"}
            reason = None
            try:
                code: int | None = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait()
                code, reason = None, f"timed out after {timeout:g} s; its process group was killed"
        output, truncated = read_bounded(log_path, self.cfg.command_output_max)
        if code is not None and code != 0:
            reason = f"exited with status {code}"
        state = "SUCCEEDED" if code == 0 else "FAILED"
        return {"state": state, "exit_code": code, "reason": reason, "output": output, "truncated": truncated}

    def collect_logs(self: Agent, command: oc.Command) -> dict[str, Any]:
        limit = min(int(command.arg("max_bytes") or self.cfg.command_output_max), self.cfg.command_output_max)
        path = self.cfg.log_file or newest_log(os.path.join(self.cfg.data_dir, "logs"))
        if path is None:
            return {"state": "FAILED", "reason": "no log file is configured and no log exists yet"}
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - limit))
                data = f.read(limit)
        except OSError as err:
            return {"state": "FAILED", "reason": f"cannot read {path}: {err.strerror}"}
        text = data.decode("utf-8", errors="replace")
        if size > limit:
            text = f"[... first {size - limit} bytes of {os.path.basename(path)} not sent ...]\n" + text
        return {"state": "SUCCEEDED", "output": text, "truncated": size > limit}


def read_bounded(path: str, limit: int) -> tuple[str, bool]:
    """The file's text if it fits in `limit` bytes, else its head and tail around a visible cut."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if size <= limit:
            return f.read(limit).decode("utf-8", errors="replace"), False
        half = limit // 2
        head = f.read(half)
        f.seek(size - half)
        tail = f.read(half)
    return oc.cut_output(head, tail, size, limit), True


def newest_log(directory: str) -> str | None:
    with contextlib.suppress(OSError):
        paths = [os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".log")]
        files = [p for p in paths if os.path.isfile(p) and not os.path.islink(p)]
        if files:
            return max(files, key=os.path.getmtime)
    return None

