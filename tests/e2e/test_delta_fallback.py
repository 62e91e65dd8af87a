"""A delta job with a fallback end to end, real processes: two agents of one model, one on the delta's base
(demo 1.0.0), one on another, older version (0.9.0). `ota jobs create --package DELTA --fallback FULL`
reaches both: the first installs 1.0.5 through the delta, the second through the full package (its own
execution says so), and both SUCCEED with the same 1.0.5 content installed."""

from __future__ import annotations

import os
import secrets

import pytest

from local.scenario import Session

from .conftest import WAIT, create_job, execution, unique_epn, wait_registered

pytestmark = pytest.mark.e2e


def test_the_device_off_the_base_takes_the_full_package(on_stack: Session) -> None:
    s = on_stack
    model = unique_epn("fbm")
    keys, base = s.work / "keys", os.urandom(64 * 1024)
    s.pack("keygen", "--out", str(keys))
    assert s.ota("keys", "add", str(keys / "publisher.pub"), "--name", f"fb-{secrets.token_hex(4)}").code == 0
    contents = {"0.9.0": os.urandom(64 * 1024), "1.0.0": base,
                "1.0.5": base[:32768] + os.urandom(4096) + base[36864:]}
    files = {}
    for version, data in contents.items():
        src = s.work / f"src-{version}"
        (src / "bin").mkdir(parents=True)
        (src / "bin" / "data").write_bytes(data)
        files[version] = s.work / f"demo-{version}.otapkg"
        s.pack("build", str(src), "--app", "demo", "--version", version, "--model", model, "--key",
               str(keys / "publisher.key"), "--compression", "none", "--out", str(files[version]))
    files["delta"] = s.work / "demo-delta.otapkg"
    s.pack("delta", "--from", str(files["1.0.0"]), "--to", str(files["1.0.5"]), "--key",
           str(keys / "publisher.key"), "--out", str(files["delta"]))
    ids, sizes = {}, {}
    for name, path in files.items():
        done = s.ota("--json", "packages", "upload", str(path), "--timeout", str(WAIT))
        assert done.code == 0, done.out + done.err
        ids[name], sizes[name] = done.json()["upload_id"], done.json()["size"]

    on_base = s.start_agent(unique_epn("fb-base"), model, keys / "publisher.pub")
    off_base = s.start_agent(unique_epn("fb-old"), model, keys / "publisher.pub")
    wait_registered(s, on_base, off_base)
    for agent, version in ((on_base, "1.0.0"), (off_base, "0.9.0")):
        first = create_job(s, ids[version], [agent.epn], block_size=4096, window=16)
        assert s.ota("jobs", "watch", first, "--timeout", str(WAIT)).code == 0
        assert s.wait_for(f"{agent.epn} reports demo {version}",
                          lambda a=agent, v=version: s.device(a.epn)["apps"] == {"demo": v}, WAIT)

    made = s.ota("--json", "jobs", "create", "--package", ids["delta"], "--fallback", ids["1.0.5"], "--device",
                 on_base.epn, "--device", off_base.epn, "--block-size", "4096", "--window", "16")
    assert made.code == 0, made.err
    job_id = made.json()["job_id"]
    assert s.ota("jobs", "watch", job_id, "--timeout", str(WAIT)).code == 0
    job = s.api.get(f"/jobs/{job_id}")
    assert (job["state"], job["counts"]["SUCCEEDED"], job["fallback_executions"]) == ("COMPLETED", 2, 1), job
    taken = {}
    for agent in (on_base, off_base):
        seen = execution(s, job_id, agent.epn)
        taken[agent.epn] = (seen["state"], seen["package_id"], seen["fallback"], seen["bytes_total"])
        assert seen["blocks_acked"] == seen["blocks_total"] > 0, seen
        assert agent.current("demo") == "1.0.5"
        assert (agent.install_root / "demo" / "current" / "bin" / "data").read_bytes() == contents["1.0.5"]
        assert agent.history_lines()[-1].split()[1:] == ["demo", "1.0.5", "SUCCEEDED"]
        assert s.wait_for(f"{agent.epn} reports demo 1.0.5",
                          lambda a=agent: s.device(a.epn)["apps"] == {"demo": "1.0.5"}, WAIT)
    assert taken == {on_base.epn: ("SUCCEEDED", ids["delta"], False, sizes["delta"]),
                     off_base.epn: ("SUCCEEDED", ids["1.0.5"], True, sizes["1.0.5"])}
    assert sizes["delta"] < sizes["1.0.5"] / 4  # the device on the base got the small one
