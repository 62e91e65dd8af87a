"""The tools a scripted scenario on the local stack uses: `ota` and `ota-pack` commands, agents, packages.

A Session wraps a running stack (the state `local.stack.up` returns): it runs `ota` (in process, the
same code as the command) and `ota-pack` (a subprocess), printing each command before it runs so a
scenario doubles as a tutorial, starts `python -m agent --config ...` processes (one certificate and
data directory each) and stops them by PID. It decides nothing about outcomes (local/demo.py does).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cli.client import ApiClient, ApiError, Target
from cli.commands import Output
from cli.main import main as ota_main
from local import procs, stack
from otaformat.container import pack_container, split_container
from otaformat.signing import encode_envelope, parse_envelope


class ScenarioError(RuntimeError):
    """A step of the scenario could not even be attempted (not a failed outcome)."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Agent:
    epn: str
    model: str
    home: Path
    process: procs.Started

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def install_root(self) -> Path:
        return self.home / "root"

    @property
    def history(self) -> Path:
        return self.data_dir / "history.txt"

    def history_lines(self) -> list[str]:
        try:
            return self.history.read_text().splitlines()
        except FileNotFoundError:
            return []

    def current(self, app: str) -> str | None:
        """The version `<install_root>/<app>/current` points to, if any."""
        try:
            return os.readlink(self.install_root / app / "current").rstrip("/").rsplit("/", 1)[-1]
        except OSError:
            return None


def agent_config(epn: str, model: str, api_url: str, token: str, publisher_pub: Path) -> str:
    return (f'epn = "{epn}"\nmodel = "{model}"\ndata_dir = "data"\ninstall_root = "root"\n'
            f'[registration]\napi_url = "{api_url}"\ntoken = "{token}"\n'
            f'[trust]\npublisher_keys = ["{publisher_pub}"]\n')


def strip_signatures(package: Path, out: Path) -> Path:
    """A copy of a package whose envelope has no signatures (an unsigned package)."""
    container = split_container(package.read_bytes())
    envelope = parse_envelope(container.envelope)
    envelope["signatures"] = []
    out.write_bytes(pack_container(encode_envelope(envelope), container.payload))
    return out


class _Tee(io.TextIOBase):
    """Keeps what a command printed and, if shown, passes it on (a terminal stays a terminal: live bars)."""

    def __init__(self, kept: io.StringIO, shown: TextIO | None) -> None:
        self.kept, self.shown = kept, shown

    def write(self, text: str) -> int:
        self.kept.write(text)
        if self.shown is not None:
            self.shown.write(text)
        return len(text)

    def flush(self) -> None:
        if self.shown is not None:
            self.shown.flush()

    def isatty(self) -> bool:
        return self.shown is not None and self.shown.isatty()


@dataclass
class Session:
    state: dict[str, Any]
    work: Path
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    agents: list[Agent] = field(default_factory=list)

    @functools.cached_property
    def api(self) -> ApiClient:
        return ApiClient(Target(self.state["api_url"], self.state["token"]))

    def say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def ota(self, *argv: str, show: bool = True) -> Result:
        """Run `ota ARGV` against the stack (in process); print the command, and its output if `show`."""
        self.say("$ ota " + " ".join(shlex.quote(a) for a in argv))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = ota_main([f"--api={self.state['api_url']}", f"--token={self.state['token']}", *argv],
                            out=Output(stream=_Tee(out, self.stream if show else None)), environ={})
        if show and err.getvalue():
            self.say(err.getvalue().rstrip())
        if code == 130:  # `ota` caught Ctrl-C (or the demo's SIGTERM): the scenario stops too
            raise KeyboardInterrupt
        return Result(code, out.getvalue(), err.getvalue())

    def pack(self, *argv: str) -> None:
        """Run `ota-pack ARGV` (python -m packager); a failure stops the scenario."""
        self.say("$ ota-pack " + " ".join(shlex.quote(a) for a in argv))
        done = subprocess.run([sys.executable, "-m", "packager", *argv], capture_output=True, text=True,
                              timeout=300, cwd=stack.PROJECT_DIR)
        if done.stdout.strip():
            self.say(done.stdout.rstrip())
        if done.returncode != 0:
            raise ScenarioError(f"ota-pack {argv[0]} failed: {done.stderr.strip() or done.returncode}")

    def refusal(self, method: str, path: str, body: Any) -> tuple[int, str]:
        """(HTTP status, message) of a request the API is expected to refuse; (2xx status, '') if it accepted."""
        try:
            self.api.request(method, path, body=body)
        except ApiError as err:
            return err.status, str(err)
        return 200, ""

    def start_agent(self, epn: str, model: str, publisher_pub: Path, *, register: bool = True,
                    extra_config: str = "") -> Agent:
        """Pre-authorise `epn` (if `register`), write its config (plus `extra_config` TOML tables) and start
        its agent process."""
        home = self.work / epn
        if register:
            made = self.ota("devices", "add", epn, "--model", model)
            token = re.search(r"registration token \(shown once\): (\S+)", made.out)
            if made.code != 0 or token is None:
                raise ScenarioError(f"cannot add device {epn}: {made.err.strip()}")
            home.mkdir(parents=True, exist_ok=True)
            (home / "agent.toml").write_text(agent_config(epn, model, self.state["api_url"], token.group(1),
                                                          publisher_pub) + extra_config)
        argv = [sys.executable, "-m", "agent", "--config", str(home / "agent.toml")]
        started = procs.start(f"agent {epn}", argv, home / "agent.log", cwd=stack.PROJECT_DIR,
                              env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTA_"))})
        agent = Agent(epn, model, home, started)
        self.agents = [a for a in self.agents if a.epn != epn] + [agent]
        self.say(f"started ota-agent for {epn} ({model}): pid {started.pid}, data {agent.data_dir}")
        return agent

    def restart_agent(self, agent: Agent) -> Agent:
        """Start the agent again from its existing config and data directory (it is not re-registered)."""
        return self.start_agent(agent.epn, agent.model, Path(), register=False)

    def stop_agent(self, agent: Agent) -> bool:
        """Stop one agent (a device going offline on purpose) and stop watching it; True if it stopped."""
        self.agents = [a for a in self.agents if a is not agent]
        return bool(procs.stop(agent.process))

    def stop_agents(self) -> None:
        for agent in self.agents:
            procs.stop(agent.process)
        self.agents = []

    def device(self, epn: str) -> dict[str, Any]:
        return self.api.get(f"/devices/{epn}")

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float) -> bool:
        """Poll `ready` until it holds (True) or `timeout` passes (False); agents must stay alive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            dead = [a.epn for a in self.agents if not procs.is_alive(a.process.pid)]
            if dead:
                raise ScenarioError(f"agent {dead[0]} exited while waiting for {what}; log "
                                    f"{self.work / dead[0] / 'agent.log'}")
            time.sleep(0.25)
        self.say(f"  (gave up waiting for {what} after {timeout:.0f}s)")
        return False
