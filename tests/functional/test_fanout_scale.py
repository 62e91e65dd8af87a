"""Fleet scale on moto (issue 13), marked slow: POST /jobs with 10,000 explicit targets and with a
10,000-device model answers without creating any execution, and no stored item or response grows with
the fleet (run with OTA_SCALE_TEST=1). Prints the time of each POST and the item and response sizes
(figures, not assertions on speed); asserts the bounds (DynamoDB's 400 KB item, Lambda's 6 MB response)."""

from __future__ import annotations

import json
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.domain.models import Device

from .flows import publish
from .test_fanout import pump

N = 10_000
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not os.environ.get("OTA_SCALE_TEST"), reason="10,000 devices on moto take minutes: OTA_SCALE_TEST=1 runs it")]


@pytest.fixture
def env(env):
    return {**env, "OTA_FANOUT_QUEUE": "ota-fanout"}


def item_bytes(item: dict) -> int:
    """DynamoDB's item size: attribute names plus values."""
    return sum(len(k) + len(next(iter(v.values()))) for k, v in item.items())


def test_ten_thousand_targets(api, world, capsys):
    repo = world.container.repository
    for n in range(N):
        repo.create_device(Device(epn=f"pump-{n:05d}", model="model-a", state="REGISTERED", token_sha256="0" * 64,
                                  token_expires=0.0, created_at=0.0, apps={"demo": "1.0.0"}))
    package = publish(api, world, ec.generate_private_key(ec.SECP256R1()), app="demo", version="1.1.0", size=3000)
    figures = {}
    epns = [f"pump-{n:05d}" for n in range(N)]
    for name, targets in (("explicit", {"devices": epns}), ("model", {"model": "model-a"})):
        started = time.perf_counter()
        made = api.call("POST", "/jobs", {"package_id": package, "targets": targets})
        figures[f"POST /jobs {name} s"] = round(time.perf_counter() - started, 2)
        assert made.status_code == 201 and made.json["targets_resolved"] == 0, made.json
        figures[f"{name} job id"] = made.json["job_id"]
    db = world.session.client("dynamodb")
    table = world.settings.table_name
    for name in ("explicit", "model"):
        key = {"pk": {"S": f"JOB#{figures[name + ' job id']}"}, "sk": {"S": "JOB"}}
        figures[f"{name} job item bytes"] = item_bytes(db.get_item(TableName=table, Key=key)["Item"])
    chunk = db.get_item(TableName=table, Key={"pk": {"S": f"JOB#{figures['explicit job id']}"},
                                              "sk": {"S": "TARGETS#000000"}})["Item"]
    figures["target chunk item bytes"] = item_bytes(chunk)
    started = time.perf_counter()
    items = pump(world)
    figures["fan-out of both jobs s"] = round(time.perf_counter() - started, 1)
    figures["fan-out work items"] = len(items)
    job_id = figures["model job id"]
    started = time.perf_counter()
    view = api.call("GET", f"/jobs/{job_id}")
    figures["GET /jobs/{id} s"] = round(time.perf_counter() - started, 3)
    figures["GET /jobs/{id} bytes"] = len(view.body)
    page = api.call("GET", f"/jobs/{job_id}/executions?limit=1000")
    figures["executions page of 1000 bytes"] = len(page.body)
    counts = db.get_item(TableName=table, Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "COUNTS"}})["Item"]
    figures["counter item bytes"] = item_bytes(counts)
    with capsys.disabled():
        print("\n" + json.dumps(figures, indent=1))
    assert view.json["targets_resolved"] == N and view.json["counts"]["QUEUED"] == N and view.json["fanout_done"]
    assert api.call("GET", f"/jobs/{figures['explicit job id']}").json["executions_created"] == N
    assert max(figures["explicit job item bytes"], figures["model job item bytes"]) < 4096
    assert figures["target chunk item bytes"] < 400 * 1024 and figures["executions page of 1000 bytes"] < 6 << 20
    assert len(page.json["executions"]) == 1000 and page.json["next_cursor"]
