"""The fleet simulator against the whole local stack: five simulated devices, registered through the API,
each with its own certificate over mutual TLS, take one job; every one assembles the package's exact bytes
(its running SHA-256 equals the package's) and the cloud sees the job complete with every execution
SUCCEEDED. The same code path `make bench-fleet` runs at 10,000 devices."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.fleetsim.cloud import paged, wait_executions
from bench.fleetsim.register import register_fleet
from bench.fleetsim.runner import SimFleet
from bench.harness import MODEL, build_package
from cli.client import ApiClient, Target
from otaformat import wire
from otaformat.signing import generate_key, public_key_pem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
WAIT = 120.0
DEVICES = 5


def upload(api: ApiClient, data: bytes) -> str:
    slot = api.post("/packages", {"size": len(data)})
    requests.put(slot["url"], data=data, timeout=60).raise_for_status()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        package = api.get(f"/packages/{slot['upload_id']}")
        if package.get("state") == "AVAILABLE":
            return str(slot["upload_id"])
        assert package.get("state") in (None, "PENDING"), package
        time.sleep(0.2)
    raise AssertionError("the package scan did not finish")


def test_five_simulated_devices_take_one_job(local_stack: dict[str, Any], tmp_path: Path) -> None:
    api = ApiClient(Target(local_stack["api_url"], local_stack["token"]), timeout=WAIT)
    key = generate_key()
    api.post("/keys", {"public_key": public_key_pem(key.public_key()).decode(), "name": f"sim-{secrets.token_hex(3)}"})
    tag = secrets.token_hex(3)
    epns = [f"sim-{tag}-{i}" for i in range(DEVICES)]
    identities, ca_file = register_fleet(local_stack["api_url"], local_stack["token"], epns, MODEL,
                                         tmp_path / "devices", apps={"simapp": "1.0.0"}, workers=4)
    assert all(Path(i.cert).is_file() and Path(i.key).stat().st_mode & 0o777 == 0o600 for i in identities)
    fleet = SimFleet(identities, str(ca_file), local_stack["mqtt"]["host"], int(local_stack["mqtt"]["port"]), MODEL,
                     processes=2, apps={"simapp": "1.0.0"})
    fleet.start()
    try:
        assert fleet.wait_connected(DEVICES, WAIT) and not fleet.lost, fleet.lost
        data = build_package(key, "1.1.0", os.urandom(150_000), app="simapp")  # 37 blocks of 4 KiB: 3 windows
        blocks = wire.block_count(len(data), 4096)
        job = api.post("/jobs", {"package_id": upload(api, data), "targets": {"devices": epns}, "mode": "block",
                                 "block_size": 4096, "window": 16})
        ids = {e["epn"]: e["execution_id"] for e in wait_executions(api, job["job_id"], DEVICES, WAIT)}
        assert sorted(ids) == sorted(epns)
        assert fleet.wait(lambda: len(fleet.finished(ids)) == DEVICES, WAIT), fleet.finished(ids)
        outcomes = fleet.finished(ids)
        assert {epn: (o["state"], o["hash_ok"]) for epn, o in outcomes.items()} == \
            {epn: ("SUCCEEDED", True) for epn in epns}
        assert fleet.wait(lambda: api.get(f"/jobs/{job['job_id']}")["state"] == "COMPLETED", WAIT)
        views = paged(api, f"/jobs/{job['job_id']}/executions", "executions")
        assert {v["epn"]: (v["state"], v["blocks_acked"]) for v in views} == \
            {epn: ("SUCCEEDED", blocks) for epn in epns}
        blocks_seen = blocks
    finally:
        totals = fleet.stop()
    assert totals["frames_own"] + totals["frames_group"] == DEVICES * blocks_seen
    assert totals["dropped"] == 0
