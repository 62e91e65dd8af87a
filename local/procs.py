"""Process supervision for the local stack: free ports, start a process with its log, wait, stop by PID.

Every process is started in its own session (so its PID is also its process group id) with stdout and
stderr going to a log file. Stopping sends SIGTERM to that group, waits a grace period, then SIGKILL.
A PID is only signalled when its start time still matches the one recorded at start, so a recycled
PID is never killed. It does not know what the processes are.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


class ProcessError(RuntimeError):
    """A process did not start, died early, or never became ready."""


@dataclass(frozen=True)
class Started:
    """One process the stack started: what stack.json records about it."""

    name: str
    pid: int
    start_time: str | None
    log: str
    argv: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["argv"] = list(self.argv)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Started:
        start_time = d.get("start_time")
        return cls(str(d["name"]), int(d["pid"]), None if start_time is None else str(start_time),
                   str(d.get("log", "")), tuple(str(a) for a in d.get("argv") or ()))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_start_time(pid: int) -> str | None:
    """The kernel start time of `pid` (Linux /proc), None when unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie child is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def start(name: str, argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> Started:
    """Start `argv` in a new session with output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        except OSError as err:
            raise ProcessError(f"cannot start {name} ({argv[0]}): {err}") from err
    return Started(name, proc.pid, proc_start_time(proc.pid), str(log), tuple(argv))


def log_tail(started: Started, lines: int = 15) -> str:
    try:
        text = Path(started.log).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(started: Started, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `ready()` until true; raise ProcessError with the log tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if not is_alive(started.pid):
            raise ProcessError(f"{started.name} exited before {what}; log {started.log}:\n{log_tail(started)}")
        if time.monotonic() > deadline:
            raise ProcessError(f"{started.name} not {what} after {timeout:.0f}s; log {started.log}:\n"
                               f"{log_tail(started)}")
        time.sleep(0.05)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def logging_under(directory: Path) -> list[Started]:
    """Live processes whose stdout is a file under `directory` (Linux /proc; [] elsewhere).

    Every process the stack starts writes its log there, so this finds one even if the starter was
    interrupted between creating it and recording it.
    """
    root = str(directory.resolve()) + os.sep
    found = []
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            target = os.readlink(entry / "fd" / "1")
        except OSError:
            continue
        pid = int(entry.name)
        if target.startswith(root) and is_alive(pid):
            found.append(Started(f"pid {pid}", pid, proc_start_time(pid), target, ()))
    return found


def stop(started: Started, grace: float = 5.0) -> bool:
    """SIGTERM the process group, SIGKILL after `grace` seconds; True when the process is gone."""
    if not is_alive(started.pid):
        return True
    current = proc_start_time(started.pid)
    if started.start_time is not None and current is not None and current != started.start_time:
        return True  # the PID was recycled: not ours any more
    _signal_group(started.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_alive(started.pid):
            return True
        time.sleep(0.05)
    _signal_group(started.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not is_alive(started.pid):
            return True
        time.sleep(0.05)
    return not is_alive(started.pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
