"""Remote commands end to end, real processes: `ota commands send` to a model of three agents (two run the
script, one refuses it by its allow-list), refusals of commands published straight on the broker
(unsigned, expired, for another device, replayed: nothing runs), and a reboot whose hook stops the agent
and whose SUCCEEDED arrives once the agent is started again (as the service manager would)."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local import procs
from local.scenario import Agent, Session, agent_config
from otaformat import commands as oc
from otaformat.signing import load_private_key
from tests.local.conftest import Client

from .conftest import WAIT, operator, unique_epn, wait_registered

pytestmark = pytest.mark.e2e

HOOK = 'echo "$OTA_COMMAND_TYPE" >> hook.log; kill -TERM "$OTA_AGENT_PID"'


def start(s: Session, epn: str, model: str, pub: Path, allow: list[str]) -> Agent:
    made = s.ota("devices", "add", epn, "--model", model)
    token = re.search(r"registration token \(shown once\): (\S+)", made.out)
    assert made.code == 0 and token, made.err
    home = s.work / epn
    home.mkdir(parents=True)
    hooks = f"reboot = {json.dumps(['/bin/sh', '-c', HOOK])}\n" if "reboot" in allow else ""
    (home / "agent.toml").write_text(agent_config(epn, model, s.state["api_url"], token.group(1), pub)
                                     + f"[commands]\nallow = {json.dumps(allow)}\n{hooks}")
    return s.start_agent(epn, model, pub, register=False)


def runs(s: Session, cid: str) -> dict[str, dict[str, Any]]:
    return {r["epn"]: r for r in s.api.get_all(f"/commands/{cid}/runs", "runs")["runs"]}


def results_of(client: Client, epn: str) -> list[oc.CommandResult]:
    return [oc.decode_result(p) for t, p in list(client.received) if t == f"ota/{epn}/cmd/result"]


def test_commands_to_a_group_refusals_and_a_reboot(on_stack: Session, mqtt_as) -> None:
    s = on_stack
    keys = s.work / "keys"
    s.pack("keygen", "--out", str(keys))
    assert s.ota("keys", "add", str(keys / "publisher.pub"), "--name", f"cmd-{secrets.token_hex(4)}").code == 0
    model = unique_epn("cmdm")
    a, b, c = (unique_epn(n) for n in ("cmd-a", "cmd-b", "cmd-c"))
    agents = [start(s, a, model, keys / "publisher.pub", ["run-script", "reboot"]),
              start(s, b, model, keys / "publisher.pub", ["run-script"]),
              start(s, c, model, keys / "publisher.pub", ["collect-logs"])]
    wait_registered(s, *agents)
    script = s.work / "check.sh"
    script.write_text('echo "hello from $OTA_EPN"; echo ran >> marker\n')

    # 1. one command to the whole model: two run it, one refuses it (not in its allow-list)
    sent = s.ota("--json", "commands", "send", "run-script", "--script", str(script), "--model", model,
                 "--key", str(keys / "publisher.key"), "--wait", "--wait-timeout", str(WAIT))
    assert sent.code == 1, sent.out + sent.err  # not every run SUCCEEDED
    cid = next(line for line in sent.out.splitlines() if '"command_id"' in line)
    cid = re.search(r'"command_id": "(cmd-[0-9a-f]+)"', cid).group(1)  # type: ignore[union-attr]
    done = runs(s, cid)
    for epn in (a, b):
        assert done[epn]["state"] == "SUCCEEDED" and done[epn]["output"] == f"hello from {epn}\n", done[epn]
    assert done[c]["state"] == "REJECTED" and done[c]["reason"].startswith("not-allowed"), done[c]
    assert not (s.work / c / "data" / "marker").exists()
    shown = s.ota("commands", "show", cid)
    assert f"hello from {a}" in shown.out and "not-allowed" in shown.out

    # 2. refusals of commands that reach the device without the API (as a compromised cloud would send)
    cloud = mqtt_as(operator(s.state))
    assert isinstance(cloud, Client), cloud
    cloud.subscribe(f"ota/{b}/cmd/result")
    key = load_private_key((keys / "publisher.key").read_bytes())
    now = datetime.now(UTC).replace(microsecond=0)

    def command(**changes: Any) -> oc.Command:
        base = oc.Command(command_id="cmd-" + secrets.token_hex(8), type="run-script", issued=oc.iso(now),
                          expires=oc.iso(now + timedelta(hours=1)), devices=(b,), script="echo ran >> marker")
        return oc.Command(**{**base.__dict__, **changes})

    unsigned = command()
    expired = command(issued=oc.iso(now - timedelta(hours=2)), expires=oc.iso(now - timedelta(hours=1)))
    elsewhere = command(devices=(a,))
    cases = [(unsigned.command_id, {"command": unsigned.to_dict(), "signatures": []}, "unsigned"),
             (expired.command_id, oc.sign_command(expired, key), "expired"),
             (elsewhere.command_id, oc.sign_command(elsewhere, key), "wrong-target")]
    replayed = s.api.get(f"/commands/{cid}")
    original = runs(s, cid)[b]
    assert original["state"] == "SUCCEEDED"
    for _, envelope, _ in cases:
        cloud.publish(f"ota/{b}/cmd", oc.encode_command_message(envelope))
    cloud.publish(f"ota/{b}/cmd", oc.encode_command_message(replayed["envelope"]))  # the group command again

    def refused(found: list[tuple[str, bytes]]) -> bool:
        states = {r.command_id for r in results_of(cloud, b)}
        return all(i in states for i, _, _ in cases) and cid in states

    assert cloud.wait_for(refused, WAIT), results_of(cloud, b)
    got = {r.command_id: r for r in results_of(cloud, b)}
    for cid_, _, code in cases:
        assert got[cid_].state == "REJECTED" and got[cid_].reason.startswith(code), got[cid_]
    assert got[cid].state == "REJECTED" and got[cid].reason.startswith("replayed")
    assert (s.work / b / "data" / "marker").read_text() == "ran\n"  # the script ran exactly once
    assert runs(s, cid)[b]["state"] == "SUCCEEDED"  # the replay's REJECTED does not change a finished run

    # 3. reboot: the hook stops the agent; started again (by the service manager), it reports SUCCEEDED
    rebooted = s.ota("--json", "commands", "send", "reboot", "--device", a, "--key", str(keys / "publisher.key"))
    assert rebooted.code == 0, rebooted.err
    rid = rebooted.json()["command_id"]
    first = next(x for x in s.agents if x.epn == a)
    assert _wait(lambda: not procs.is_alive(first.process.pid)), procs.log_tail(first.process)
    assert (s.work / a / "data" / "hook.log").read_text() == "reboot\n"
    assert runs(s, rid)[a]["state"] == "RUNNING"
    s.restart_agent(first)
    watched = s.ota("commands", "watch", rid, "--timeout", str(WAIT))
    assert watched.code == 0, watched.out + watched.err
    assert "device rebooted" in runs(s, rid)[a]["reason"]


def _wait(ready: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.2)
    return False
