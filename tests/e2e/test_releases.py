"""Automatic updates end to end, real processes: two agents that update `demo` automatically on channel
`stable` and one that pinned it. 1.0.0 is rolled out by a job; `ota releases publish demo 1.0.5` makes
the two install 1.0.5 by a delta from 1.0.0 on their own (each an execution the operator sees); the
pinned one stays on 1.0.0. A device that comes online later picks the release up by its own check."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from local.scenario import Agent, Session, agent_config

from .conftest import WAIT, unique_epn, wait_registered

pytestmark = pytest.mark.e2e


def start(s: Session, epn: str, model: str, pub: Path, auto: str) -> Agent:
    made = s.ota("devices", "add", epn, "--model", model)
    token = re.search(r"registration token \(shown once\): (\S+)", made.out)
    assert made.code == 0 and token, made.err
    home = s.work / epn
    home.mkdir(parents=True)
    (home / "agent.toml").write_text(agent_config(epn, model, s.state["api_url"], token.group(1), pub)
                                     + '[apps]\nmanaged = ["demo"]\n' + auto)
    return s.start_agent(epn, model, pub, register=False)


def executions(s: Session, epn: str) -> list[dict[str, Any]]:
    return s.api.get(f"/devices/{epn}/executions")["executions"]  # type: ignore[no-any-return]


def test_a_published_release_is_installed_automatically(on_stack: Session) -> None:
    s = on_stack
    model = unique_epn("relm")
    keys, base = s.work / "keys", os.urandom(64 * 1024)
    s.pack("keygen", "--out", str(keys))
    assert s.ota("keys", "add", str(keys / "publisher.pub"), "--name", f"rel-{secrets.token_hex(4)}").code == 0
    files = {}
    for version, data in (("1.0.0", base), ("1.0.5", base[:32768] + os.urandom(4096) + base[36864:])):
        src = s.work / f"src-{version}"
        (src / "bin").mkdir(parents=True)
        (src / "bin" / "data").write_bytes(data)
        files[version] = s.work / f"demo-{version}.otapkg"
        s.pack("build", str(src), "--app", "demo", "--version", version, "--model", model, "--key",
               str(keys / "publisher.key"), "--compression", "none", "--out", str(files[version]))
    files["delta"] = s.work / "demo-delta.otapkg"
    s.pack("delta", "--from", str(files["1.0.0"]), "--to", str(files["1.0.5"]), "--key",
           str(keys / "publisher.key"), "--out", str(files["delta"]))
    ids = {}
    for name, path in files.items():
        done = s.ota("--json", "packages", "upload", str(path), "--timeout", str(WAIT))
        assert done.code == 0, done.out + done.err
        ids[name] = done.json()["upload_id"]

    auto = '[auto]\nchannel = "stable"\ncheck_interval = 2\ncheck_jitter = 0.5\n'
    followers = [start(s, unique_epn("rel-a"), model, keys / "publisher.pub", auto) for _ in range(2)]
    pinned = start(s, unique_epn("rel-p"), model, keys / "publisher.pub", auto + 'pin = { demo = "1.0.0" }\n')
    wait_registered(s, *followers, pinned)
    first = s.ota("--json", "jobs", "create", "--package", ids["1.0.0"], "--model", model)
    assert first.code == 0, first.err
    assert s.ota("jobs", "watch", first.json()["job_id"], "--timeout", str(WAIT)).code == 0
    fanned = s.api.get(f"/jobs/{first.json()['job_id']}")  # the model job's fan-out ran through the bridge's pump
    assert fanned["target_spec"] == {"model": model} and fanned["fanout_done"], fanned
    assert (fanned["targets_resolved"], fanned["executions_created"], fanned["counts"]["SUCCEEDED"]) == (3, 3, 3)

    published = s.ota("--json", "releases", "publish", "demo", "1.0.5", "--model", model, "--channel", "stable")
    assert published.code == 0, published.err
    for agent in followers:
        assert s.wait_for(f"{agent.epn} on 1.0.5", lambda a=agent: a.current("demo") == "1.0.5", WAIT)
        auto_exec = [e for e in executions(s, agent.epn) if e["job_id"] != first.json()["job_id"]]
        assert len(auto_exec) == 1, auto_exec
        job = s.api.get(f"/jobs/{auto_exec[0]['job_id']}")
        assert s.wait_for("the execution SUCCEEDED", lambda j=job: s.api.get(
            f"/jobs/{j['job_id']}")["counts"]["SUCCEEDED"] == 1, WAIT)
        assert job["package_id"] == ids["delta"] and job["version"] == "1.0.5"  # a delta from 1.0.0
        assert s.device(agent.epn)["apps"] == {"demo": "1.0.5"}
    assert pinned.current("demo") == "1.0.0" and len(executions(s, pinned.epn)) == 1  # pinned: untouched

    late = start(s, unique_epn("rel-l"), model, keys / "publisher.pub", auto)  # no 1.0.0: gets the full 1.0.5
    assert s.wait_for("the late device on 1.0.5", lambda: late.current("demo") == "1.0.5", WAIT)
    [execution] = executions(s, late.epn)
    assert s.api.get(f"/jobs/{execution['job_id']}")["package_id"] == ids["1.0.5"]
    mine = [r for r in s.api.get("/releases")["releases"] if r["model"] == model]
    assert [(r["app"], r["version"], r["channel"]) for r in mine] == [("demo", "1.0.5", "stable")]
