"""POST /jobs with a large explicit target list (issue 13): how long the request takes and how large what
it writes and answers is, on moto.

`python -m bench.jobpost [--devices 100,10000] [--repeat 3]` runs, for each N, in one in-process moto
(mock_aws, the functional tests' stand-in) with the production wiring (chalicelib.bootstrap.build, the
SQS fan-out queue): N registered devices whose EPN IDs have the longest length allowed (64 characters,
the worst case for every size below), one AVAILABLE package record, then `POST /jobs` through Chalice's
test client with `{"targets": {"devices": [N EPNs]}}`, `--repeat` times (a new job each time). Every
DynamoDB request of the POST is recorded (a wrapper around the client) and every item it writes is
measured (attribute names plus values, as DynamoDB counts them). Printed per N: the median time of the
POST, the ratio to the first N, the request body and answer bytes, DynamoDB requests by operation, the
largest item written and which, the target chunk items, the fan-out messages queued and the largest.
Measures only; the bounds are asserted by tests/functional/test_job_targets_bounds.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from collections import Counter
from typing import Any

import boto3
import certifi
from chalice.test import Client
from moto import mock_aws

from chalicelib import bootstrap
from chalicelib.adapters.dynamo import DynamoRepository
from chalicelib.adapters.provision import ensure_resources
from chalicelib.domain.models import Device, Package
from chalicelib.settings import Settings

TOKEN = "bench-token"
EPN_CHARS = 64
ENV = {
    "OTA_TABLE_NAME": "bench-jobpost", "OTA_STAGING_BUCKET": "bench-staging", "OTA_REPOSITORY_BUCKET": "bench-repo",
    "OTA_STAGING_QUEUE": "bench-staging", "OTA_DEVICE_QUEUE": "bench-device", "OTA_FANOUT_QUEUE": "bench-fanout",
    "OTA_PUBLISHER": "iot-data", "OTA_SIGNER": "iot", "OTA_AUTH": "token", "OTA_MQTT_HOST": "mqtt.example.test",
    "OTA_MQTT_PORT": "8883", "OTA_OPERATOR_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest(),
    "OTA_MQTT_CA": certifi.where(),
}


class Recording:
    """A boto3 DynamoDB client that records every request (operation, arguments)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            self.requests.append((name, kwargs))
            return target(**kwargs)

        return call


def written(requests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for name, kwargs in requests:
        if name == "put_item":
            items.append(kwargs["Item"])
        elif name == "transact_write_items":
            items.extend(t["Put"]["Item"] for t in kwargs["TransactItems"] if "Put" in t)
        elif name == "batch_write_item":
            items.extend(r["PutRequest"]["Item"] for rs in kwargs["RequestItems"].values() for r in rs
                         if "PutRequest" in r)
    return items


def item_bytes(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + len(str(next(iter(v.values()))).encode()) for k, v in item.items())


def epn(n: int) -> str:
    return f"{n:06d}-".ljust(EPN_CHARS, "x")


def measure(devices: int, repeat: int) -> dict[str, Any]:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        settings = Settings.from_env(ENV)
        ensure_resources(settings, session)
        container = bootstrap.build(settings, session)
        bootstrap.configure(container)
        try:
            repo = container.repository
            for n in range(devices):
                repo.create_device(Device(epn=epn(n), model="bench-m", state="REGISTERED", token_sha256="0" * 64,
                                          token_expires=0.0, created_at=0.0, apps={"fw": "1.0.0"}))
            repo.create_package(Package(upload_id="up-0123456789abcdef0123", state="AVAILABLE", declared_size=525092,
                                        created_at=0.0, app="fw", version_label="2.0.0", kind="full",
                                        models=("bench-m",), size=525092, sha256="s" * 64,
                                        repository_key="packages/fw", envelope={}))
            body = json.dumps({"package_id": "up-0123456789abcdef0123",
                               "targets": {"devices": [epn(n) for n in range(devices)]}})
            import app as application

            times, answer, recorded = [], b"", Recording(None)
            with Client(application.app) as client:
                for _ in range(repeat):
                    recorded = Recording(session.client("dynamodb"))
                    container.repository = DynamoRepository(recorded, settings.table_name)
                    started = time.perf_counter()
                    reply = client.http.post("/jobs", body=body, headers={
                        "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
                    times.append(time.perf_counter() - started)
                    assert reply.status_code == 201, reply.body[:300]
                    answer = reply.body
            items = written(recorded.requests)
            largest = max(items, key=item_bytes)
            chunks = [i for i in items if i["sk"]["S"].startswith("TARGETS#")]
            sqs = session.client("sqs")
            url = sqs.get_queue_url(QueueName=ENV["OTA_FANOUT_QUEUE"])["QueueUrl"]
            bodies: list[str] = []
            while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                bodies.extend(m["Body"] for m in got)
            return {
                "devices": devices, "seconds": statistics.median(times), "times": [round(t, 2) for t in times],
                "body bytes": len(body), "answer bytes": len(answer),
                "requests": dict(Counter(name for name, _ in recorded.requests)),
                "largest item bytes": item_bytes(largest), "largest item": largest["sk"]["S"],
                "job item bytes": item_bytes(next(i for i in items if i["sk"]["S"] == "JOB")),
                "chunk items": len(chunks), "messages per POST": len(bodies) // repeat,
                "largest message bytes": max((len(b) for b in bodies), default=0),
            }
        finally:
            bootstrap.reset()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jobpost", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="100,10000", help="comma-separated fleet sizes (explicit targets)")
    parser.add_argument("--repeat", type=int, default=3, help="POSTs per size (the median is shown)")
    args = parser.parse_args(argv)
    rows = [measure(int(n), args.repeat) for n in args.devices.split(",")]
    load = os.getloadavg()
    print(f"POST /jobs with an explicit list, in-process moto, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for row in rows:
        print(json.dumps({**row, "vs first N": round(row["seconds"] / rows[0]["seconds"], 1),
                          "seconds": round(row["seconds"], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
