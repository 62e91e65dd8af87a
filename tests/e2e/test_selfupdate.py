"""The agent updates itself, real processes; the test plays the service manager (Restart=always): it starts
`ota-agent` again whenever it exits. A new agent that dies at start is replaced by the previous one, which
reports the execution FAILED with the reason; a working new agent confirms after connecting and the
execution SUCCEEDED."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from local import procs
from local.scenario import Agent, Session

from .conftest import WAIT, create_job, terminal, unique_epn, wait_execution, wait_registered

pytestmark = pytest.mark.e2e

EXTRA = '[self_update]\napp = "ota-agent"\ntrial_seconds = 60\n'
CRASHING = "#!/bin/sh\necho 'new agent: crashing at start' >&2\nexit 3\n"
WORKING = '#!/bin/sh\nexec "$OTA_PYTHON" -m agent "$@"\n'  # the same agent code, run from its new directory


def build(s: Session, version: str, entry: str, key: Path, model: str) -> str:
    src = s.work / f"agent-{version}"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "ota-agent").write_text(entry)
    (src / "bin" / "ota-agent").chmod(0o755)
    out = s.work / f"ota-agent-{version}.otapkg"
    s.pack("build", str(src), "--app", "ota-agent", "--version", version, "--kind", "agent", "--model", model,
           "--key", str(key), "--compression", "none", "--out", str(out))
    done = s.ota("--json", "packages", "upload", str(out), "--timeout", str(WAIT))
    assert done.code == 0, done.out + done.err
    return str(done.json()["upload_id"])


def supervise(s: Session, agent: Agent, job_id: str) -> tuple[dict[str, Any], int]:
    """Restart the agent whenever it exits (as systemd would) until the execution ends; (view, restarts)."""
    deadline, restarts = time.monotonic() + WAIT, 0
    while time.monotonic() < deadline:
        view = s.api.get(f"/jobs/{job_id}/executions/{agent.epn}")
        if terminal(view):
            return view, restarts
        current = next(a for a in s.agents if a.epn == agent.epn)
        if not procs.is_alive(current.process.pid):
            s.restart_agent(current)
            restarts += 1
        time.sleep(0.2)
    raise AssertionError(f"execution not finished; {restarts} restarts")


def test_a_new_agent_that_dies_at_start_is_rolled_back_and_a_good_one_confirms(on_stack: Session) -> None:
    s = on_stack
    keys = s.work / "keys"
    s.pack("keygen", "--out", str(keys))
    assert s.ota("keys", "add", str(keys / "publisher.pub"), "--name", f"su-{secrets.token_hex(4)}").code == 0
    model = unique_epn("sum")
    bad = build(s, "1.1.0", CRASHING, keys / "publisher.key", model)
    good = build(s, "1.2.0", WORKING, keys / "publisher.key", model)
    agent = s.start_agent(unique_epn("su"), model, keys / "publisher.pub", extra_config=EXTRA)
    wait_registered(s, agent)

    job = create_job(s, bad, [agent.epn])
    view, restarts = supervise(s, agent, job)
    assert view["state"] == "FAILED", view
    assert "stopped before it confirmed" in view["timeline"][-1]["reason"] and "previous agent restored" in \
        view["timeline"][-1]["reason"], view["timeline"]
    assert restarts == 2  # into the new agent (it crashed), then the launcher restored the old one
    assert agent.current("ota-agent") is None and "ota-agent" not in s.device(agent.epn)["apps"]
    log = (agent.home / "agent.log").read_text()
    assert "new agent: crashing at start" in log

    job = create_job(s, good, [agent.epn])
    view, restarts = supervise(s, agent, job)
    assert view["state"] == "SUCCEEDED" and restarts == 1, view
    assert "new agent 1.2.0 confirmed" in (agent.home / "agent.log").read_text()
    assert agent.current("ota-agent") == "1.2.0"
    assert s.wait_for("inventory", lambda: s.device(agent.epn)["apps"].get("ota-agent") == "1.2.0", WAIT)
    final = next(a for a in s.agents if a.epn == agent.epn)
    assert procs.is_alive(final.process.pid)  # the new agent keeps running
    view = wait_execution(s, job, agent.epn, terminal)
    assert view["state"] == "SUCCEEDED"
