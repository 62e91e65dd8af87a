"""Remote commands on the agent: every refusal happens before anything runs; scripts are bounded;
restart hooks report after the agent comes back; a command waits while an update runs."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from agent.machine import State
from otaformat import commands as oc

from .conftest import NOW, Harness
from .pkgtools import new_key

ALL = oc.TYPES


def command(kind: str = "run-script", *, script: str | None = "echo hello", epn: str | None = "dev-1",
            model: str | None = None, issued=NOW - timedelta(minutes=1), expires=NOW + timedelta(hours=1),
            timeout: int = 10, args: dict[str, str] | None = None, cid: str | None = None) -> oc.Command:
    return oc.Command(command_id=cid or "cmd-" + secrets.token_hex(8), type=kind, issued=oc.iso(issued),
                      expires=oc.iso(expires), devices=(epn,) if model is None and epn else (), model=model,
                      args=tuple(sorted((args or {}).items())), script=script if kind == "run-script" else None,
                      timeout=timeout)


def message(cmd: oc.Command, key) -> bytes:
    return oc.encode_command_message(oc.sign_command(cmd, key))


def cmd_results(h: Harness) -> list[oc.CommandResult]:
    return [oc.decode_result(p) for t, p in h.transport.sent if t.endswith("/cmd/result")]


@pytest.fixture
def allowed(config, tmp_path):
    hooks = {"reboot": ("/bin/sh", "-c", f"echo reboot >> {tmp_path}/hooks"),
             "restart-agent": ("/bin/sh", "-c", f"echo restart >> {tmp_path}/hooks"),
             "restart-app": ("/bin/sh", "-c", f"echo app $OTA_APP {{app}} >> {tmp_path}/hooks")}
    return replace(config, command_allow=ALL, command_hooks=hooks, restart_grace=30.0)


def marker_script(tmp_path: Path) -> str:
    return f"echo ran >> {tmp_path}/marker; echo out"


def test_a_signed_script_runs_and_its_output_comes_back(allowed, publisher, tmp_path):
    h = Harness(allowed)
    cmd = command(script=marker_script(tmp_path) + "; exit 3")
    h.send("cmd", message(cmd, publisher[0]))
    states = [(r.state, r.exit_code) for r in cmd_results(h)]
    assert states == [("RUNNING", None), ("FAILED", 3)]
    last = cmd_results(h)[-1]
    assert last.output == "out\n" and not last.truncated and "status 3" in (last.reason or "")
    assert (tmp_path / "marker").read_text() == "ran\n"
    assert h.agent.state == State.IDLE


OTHER = new_key()


@pytest.mark.parametrize(("name", "make", "signer", "code"), [
    ("unsigned", lambda c: {"command": c.to_dict(), "signatures": []}, None, "unsigned"),
    ("untrusted key", None, OTHER[0], "untrusted-key"),
    ("tampered", "tamper", None, "bad-signature"),
    ("expired", lambda c: replace(c, issued=oc.iso(NOW - timedelta(hours=2)),
                                  expires=oc.iso(NOW - timedelta(seconds=1))), None, "expired"),
    ("other device", lambda c: replace(c, devices=("dev-2",)), None, "wrong-target"),
    ("other model", lambda c: replace(c, devices=(), model="m2"), None, "wrong-target"),
])
def test_refused_commands_never_run(allowed, publisher, tmp_path, name, make, signer, code):
    h = Harness(allowed)
    cmd = command(script=marker_script(tmp_path))
    key = signer or publisher[0]
    if make == "tamper":
        envelope = oc.sign_command(cmd, key)
        envelope["command"]["script"] = "echo evil >> " + str(tmp_path / "marker")
        payload = oc.encode_command_message(envelope)
    elif callable(make) and name == "unsigned":
        payload = oc.encode_command_message(make(cmd))
    else:
        payload = message(make(cmd) if callable(make) else cmd, key)
    h.send("cmd", payload)
    [result] = cmd_results(h)
    assert result.state == "REJECTED" and result.reason and result.reason.startswith(code), result
    assert not (tmp_path / "marker").exists()
    assert h.agent.state == State.IDLE


def test_a_type_not_in_the_allow_list_is_refused(allowed, publisher, tmp_path):
    h = Harness(replace(allowed, command_allow=("collect-logs",)))
    h.send("cmd", message(command(script=marker_script(tmp_path)), publisher[0]))
    [result] = cmd_results(h)
    assert result.state == "REJECTED" and result.reason.startswith("not-allowed")
    assert not (tmp_path / "marker").exists()


def test_a_replayed_command_runs_once_even_after_a_restart(allowed, publisher, tmp_path):
    h = Harness(allowed)
    payload = message(command(script=marker_script(tmp_path)), publisher[0])
    h.send("cmd", payload)
    h.restart()
    h.send("cmd", payload)
    assert [r.state for r in cmd_results(h)] == ["RUNNING", "SUCCEEDED", "REJECTED"]
    assert cmd_results(h)[-1].reason.startswith("replayed")
    assert (tmp_path / "marker").read_text() == "ran\n"


def test_a_model_wide_command_reaches_the_model(allowed, publisher, tmp_path):
    h = Harness(allowed)
    h.send("cmd", message(command(model="m1", epn=None, script=marker_script(tmp_path)), publisher[0]))
    assert [r.state for r in cmd_results(h)] == ["RUNNING", "SUCCEEDED"]


def test_a_hanging_script_is_killed_with_its_group_and_output_is_capped(allowed, publisher, tmp_path):
    h = Harness(replace(allowed, command_output_max=512))
    script = f"sh -c 'echo $$ > {tmp_path}/child; exec sleep 30' & head -c 5000 /dev/zero | tr '\\0' x; sleep 30"
    h.send("cmd", message(command(script=script, timeout=1), publisher[0]))
    last = cmd_results(h)[-1]
    assert last.state == "FAILED" and "timed out after 1 s" in last.reason and last.exit_code is None
    assert last.truncated and "output truncated" in last.output and len(last.output.encode()) <= 512
    child = int((tmp_path / "child").read_text())
    assert not alive(child), "a process the script started outlived its timeout"


def alive(pid: int) -> bool:
    for _ in range(20):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    return False
        except OSError:
            return False
        time.sleep(0.1)
    return True


def test_collect_logs_is_bounded(allowed, publisher, tmp_path):
    log = tmp_path / "agent.log"
    log.write_text("".join(f"line {i}\n" for i in range(2000)))
    h = Harness(replace(allowed, log_file=str(log)))
    h.send("cmd", message(command("collect-logs", args={"max_bytes": "300"}), publisher[0]))
    last = cmd_results(h)[-1]
    assert last.state == "SUCCEEDED" and last.truncated and last.output.endswith("line 1999\n")
    assert len(last.output) < 400 and "not sent" in last.output


def test_restart_app_runs_its_hook_with_the_app(allowed, publisher, tmp_path):
    h = Harness(allowed)
    h.send("cmd", message(command("restart-app", args={"app": "demo"}), publisher[0]))
    assert cmd_results(h)[-1].state == "SUCCEEDED"
    assert (tmp_path / "hooks").read_text() == "app demo demo\n"


@pytest.mark.parametrize("kind", ["reboot", "restart-agent"])
def test_a_restart_is_reported_after_the_agent_comes_back(allowed, publisher, tmp_path, kind):
    h = Harness(allowed)
    h.send("cmd", message(command(kind), publisher[0]))
    assert [r.state for r in cmd_results(h)] == ["RUNNING"]  # the hook ran; the service manager restarts us
    assert h.agent.state == State.COMMANDING
    h.restart()
    h.idle(0.1)
    last = cmd_results(h)[-1]
    assert last.state == "SUCCEEDED" and "back" in last.reason and h.agent.state == State.IDLE


def test_a_restart_hook_that_leaves_the_agent_running_fails_after_the_grace(allowed, publisher):
    h = Harness(allowed)
    h.send("cmd", message(command("reboot"), publisher[0]))
    h.idle(10)
    assert h.agent.state == State.COMMANDING
    h.idle(25)
    last = cmd_results(h)[-1]
    assert last.state == "FAILED" and "not restarted within 30 s" in last.reason


def test_a_failing_hook_fails_the_command(allowed, publisher):
    h = Harness(replace(allowed, command_hooks={**allowed.command_hooks, "reboot": ("/bin/false",)}))
    h.send("cmd", message(command("reboot"), publisher[0]))
    assert cmd_results(h)[-1].state == "FAILED" and h.agent.state == State.IDLE


def test_a_script_interrupted_by_a_restart_is_failed_not_rerun(allowed, publisher, tmp_path):
    h = Harness(allowed)
    h.agent.store.data["command"] = {"envelope": oc.sign_command(command(script=marker_script(tmp_path)),
                                                                 publisher[0]), "phase": "running", "outcome": None}
    h.agent.store.data["state"] = "COMMANDING"
    h.agent.store.save()
    h.restart()
    last = cmd_results(h)[-1]
    assert last.state == "FAILED" and "restarted while run-script ran" in last.reason
    assert not (tmp_path / "marker").exists()


def test_config_requires_a_hook_for_allowed_restarts(tmp_path):
    pub = tmp_path / "p.pem"
    pub.write_bytes(new_key()[1])
    raw = {"epn": "d", "model": "m", "data_dir": "d", "install_root": "r", "trust": {"publisher_keys": [str(pub)]},
           "commands": {"allow": ["reboot"]}}
    with pytest.raises(ConfigError, match=r"commands\.reboot"):
        parse_config(raw, str(tmp_path))
    raw["commands"] = {"allow": ["reboot"], "reboot": ["systemctl", "reboot"], "output_max": 1024}
    config = parse_config(raw, str(tmp_path))
    assert config.command_allow == ("reboot",) and config.command_hooks["reboot"] == ("systemctl", "reboot")
    raw["commands"] = {"allow": ["format-disk"]}
    with pytest.raises(ConfigError, match=r"commands\.allow"):
        parse_config(raw, str(tmp_path))


def test_a_command_during_an_update_waits_and_runs_when_sent_again(allowed, publisher, tmp_path):
    from .pkgtools import build_package, frames, job_for

    h = Harness(allowed)
    package, envelope = build_package(publisher[0], files={"bin/app": b"x" * 5000})
    job = job_for(package, envelope)
    h.job(job)
    assert h.agent.state == State.DOWNLOADING
    payload = message(command(script=marker_script(tmp_path)), publisher[0])
    h.send("cmd", payload)
    [result] = cmd_results(h)
    assert result.state == "DELIVERED" and "DOWNLOADING" in result.reason
    assert not (tmp_path / "marker").exists() and h.agent.state == State.DOWNLOADING
    for frame in frames(job, package):
        h.send("blk", frame)
    assert h.agent.state == State.IDLE and h.transport.terminal()[-1].state == "SUCCEEDED"
    h.send("cmd", payload)
    assert [r.state for r in cmd_results(h)] == ["DELIVERED", "RUNNING", "SUCCEEDED"]
    assert (tmp_path / "marker").read_text() == "ran\n"
