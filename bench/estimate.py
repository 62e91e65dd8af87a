"""How good is the cost estimate? A real local rollout counted against `POST /jobs?dry_run=true`.

`python -m bench.estimate` (make bench-estimate) starts the local stack through bench.harness (moto
server, mosquitto with mutual TLS, the API, the bridge with 5 device-queue pollers, sweep every 5 s)
with moto's request recorder on (MOTO_ENABLE_RECORDING: moto writes every request it serves to a file;
nothing in local/ changes), and real `ota-agent` processes: `--devices` as shipped and `--lossy` behind
bench.loss's first-arrival loss injector (10 % of each stream's blocks lose their first copy). For each
group it uploads one signed package, asks the API for the estimate (dry run, `loss` = the injected
share), resets moto's recording, creates the job, waits for every device's final status and inventory,
and counts what really happened:

- MQTT: a spy (operator certificate, QoS 0) on `ota/+/#` sees every publish both ways, with payload
  and topic sizes, metered in 5 KB units with IoT Core's rules (domain/pricing.py: HTTP publish +
  delivery + PUBACK for each cloud-to-device message);
- Lambda: device-message invocations = the bridge's handled batches (one DeleteMessageBatch each on the
  device queue); SQS rule actions = SendMessage on the device queue;
- DynamoDB: write requests (PutItem, UpdateItem, DeleteItem, items of BatchWriteItem and
  TransactWriteItems) with their write units from the recorded item sizes, read requests (GetItem,
  Query, Scan, BatchGetItem);
- S3: GET and HEAD on the repository bucket.

It prints estimate, measured and error per line, the estimate's total against the same prices applied
to the measured counts, and writes .bench-cache/estimate-results.json. Lambda invocations are priced
in the estimate with one message per invocation (an upper bound on AWS, where the batching depends on
the pollers), so that line shows the local batching, not an error of the protocol counts. The local
sweep runs every 5 s (AWS: every minute); the estimate is told so. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests

from bench.harness import CACHE, MODEL, MiB, Spy, build_package, package_content
from bench.loss import LossService
from chalicelib import prices
from chalicelib.domain import pricing
from local import stack

GOAL = 0.10
DEVICE_QUEUE = stack.RESOURCE_NAMES["OTA_DEVICE_QUEUE"]
REPOSITORY = stack.RESOURCE_NAMES["OTA_REPOSITORY_BUCKET"]
DOWN = ("job", "blk", "cmd")


@dataclass
class MeteredSpy(Spy):
    """The harness's spy, also metering each message in IoT Core's 5 KB units (payload + topic)."""

    units: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        _, epn, leaf = msg.topic.split("/", 2)
        size, topic = len(msg.payload), len(msg.topic.encode())
        metered = (pricing.down_units(size, topic, pricing.IOT_UNIT) if leaf in DOWN
                   else pricing.units(size + topic, pricing.IOT_UNIT))
        with self.lock:
            self.units[(epn, leaf)] += metered


def item_bytes(value: Any) -> int:
    """DynamoDB's size of an attribute value (names counted by the caller): strings and binaries by
    length, numbers about one byte per two digits, maps and lists 3 bytes plus their elements."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind == "N":
        return math.ceil(len(inner.lstrip("-")) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + item_bytes(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + item_bytes(v) for v in inner)
    return sum(len(str(v)) for v in inner)  # SS, NS, BS


def write_units(item: dict[str, Any]) -> int:
    return math.ceil(sum(len(k.encode()) + item_bytes(v) for k, v in item.items()) / 1024)


def tally(recording: list[dict[str, Any]]) -> Counter[str]:
    """Counts of the AWS requests in moto's recording."""
    out: Counter[str] = Counter()
    for entry in recording:
        headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
        target = headers.get("x-amz-target", "")
        raw = entry.get("body") or ""
        body = base64.b64decode(raw).decode(errors="replace") if entry.get("body_encoded") else raw
        if target.startswith("DynamoDB_"):
            action, data = target.split(".", 1)[1], json.loads(body or "{}")
            if action in ("PutItem", "UpdateItem", "DeleteItem"):
                out["ddb_writes"] += 1
                out["ddb_wru"] += write_units(data.get("Item") or data.get("Key") or {})
            elif action == "BatchWriteItem":
                for requests_ in data["RequestItems"].values():
                    for r in requests_:
                        out["ddb_writes"] += 1
                        out["ddb_wru"] += write_units((r.get("PutRequest") or {}).get("Item") or {})
            elif action == "TransactWriteItems":
                for item in data["TransactItems"]:
                    out["ddb_writes"] += 1
                    out["ddb_wru"] += 2 * write_units(next(iter(item.values())).get("Item") or {})
            elif action in ("GetItem", "Query", "Scan", "BatchGetItem"):
                out["ddb_reads"] += 1
        elif target.startswith("AmazonSQS."):
            action, data = target.split(".", 1)[1], json.loads(body or "{}")
            on_device_queue = str(data.get("QueueUrl", "")).endswith("/" + DEVICE_QUEUE)
            if on_device_queue and action == "SendMessage":
                out["sqs_sent"] += 1
            elif on_device_queue and action == "SendMessageBatch":
                out["sqs_sent"] += len(data.get("Entries", []))
            elif on_device_queue and action == "DeleteMessageBatch":
                out["batches"] += 1
                out["batched"] += len(data.get("Entries", []))
        elif entry.get("method") in ("GET", "HEAD") and REPOSITORY in (headers.get("host", "") + entry["url"]):
            out["s3_gets"] += 1
    return out


def recorder(moto_url: str, action: str) -> requests.Response:
    method = "GET" if action == "download-recording" else "POST"
    reply = requests.request(method, f"{moto_url}/moto-api/recorder/{action}", timeout=120)
    reply.raise_for_status()
    return reply


def rollout(service: LossService, epns: list[str], size: int, block_size: int, window: int, loss: float,
            version: str, timeout: float) -> dict[str, Any]:
    # a package for two models: the cloud offers no group (docs/protocol.md 15), so the rollout is the
    # unicast one the estimate prices (for a group job the estimate is an upper bound: docs/operations.md)
    upload_id = service.upload(build_package(service.key, version, package_content(size),
                                             models=(MODEL, "bench-unicast")))
    body = {"package_id": upload_id, "targets": {"devices": epns}, "mode": "block", "block_size": block_size,
            "window": window}
    answer = service.api.request("POST", "/jobs", body=body, params={"dry_run": "true", "loss": str(loss)})
    spec = pricing.RolloutSpec(**answer["rollout"])
    moto = service.state["moto_url"]
    with MeteredSpy(service, ("ota/+/#",)) as spy:
        time.sleep(1.0)
        recorder(moto, "reset-recording")
        began = time.perf_counter()
        job = service.api.post("/jobs", body)
        ids: dict[str, str] = {}

        def fanned_out() -> bool:  # the executions come from the job's background fan-out
            ids.update({e["epn"]: e["execution_id"] for e in service.executions(job["job_id"])})
            return len(ids) == len(epns)

        def finished() -> set[str]:
            return {epn for epn in epns for _, s in spy.statuses(epn)
                    if s.get("x") == ids.get(epn) and s.get("state") in ("SUCCEEDED", "FAILED", "REJECTED")}

        spy.wait(fanned_out, timeout)

        spy.wait(lambda: len(finished()) == len(epns), timeout)
        seconds = time.perf_counter() - began
        spy.wait(lambda: all(spy.counts[(e, "status")] >= 5 for e in epns), 10.0)  # the inventories
        time.sleep(6.0)  # late acks and one more sweep
        recording = [json.loads(line) for line in recorder(moto, "download-recording").text.splitlines() if line]
    done = finished()
    counts = tally(recording)
    leaf = Counter[str]()
    units = 0
    for (epn, name), n in spy.counts.items():
        if epn in ids:
            leaf[name] += n
            units += spy.units[(epn, name)]
    blocks = spec.targets * math.ceil(spec.package_size / spec.block_size)
    measured = {
        "down_messages": leaf["job"] + leaf["blk"], "up_messages": leaf["ack"] + leaf["get"] + leaf["status"],
        "blocks": blocks, "resends": leaf["blk"] - blocks, "acks": leaf["ack"], "gets": leaf["get"],
        "statuses": leaf["status"], "iot_units": units, "rules": counts["sqs_sent"],
        "invocations": counts["batches"], "write_requests": counts["ddb_writes"], "write_units": counts["ddb_wru"],
        "read_requests": counts["ddb_reads"], "s3_gets": counts["s3_gets"],
    }
    return {"spec": answer["rollout"], "succeeded": len(done), "targets": len(epns), "seconds": seconds,
            "measured": measured, "batched": counts["batched"], "estimate": answer}


def compare(result: dict[str, Any], table: pricing.Prices) -> tuple[str, float, float]:
    """Table of estimate vs measured per line, and the estimate's total and the measured total."""
    spec = pricing.RolloutSpec(**result["spec"])
    # the local platform: the bridge sweeps every 5 s, and its pollers share one process (one warm container)
    assume = replace(pricing.Assumptions(), sweep_seconds=5.0, containers=1)
    est = pricing.count(spec, assume)
    measured = result["measured"]
    lines = ["| line | estimate | measured | error |", "|---|---|---|---|"]
    for name in ("down_messages", "up_messages", "resends", "acks", "gets", "statuses", "iot_units", "rules",
                 "invocations", "write_requests", "write_units", "read_requests", "s3_gets"):
        e, m = getattr(est, name), measured[name]
        error = f"{(e - m) / m:+.1%}" if m else ("0" if e == m else "n/a")
        note = " (upper bound: 1 message per invocation)" if name == "invocations" else ""
        lines.append(f"| {name}{note} | {e:,} | {m:,} | {error} |")
    # the measured cost: measured counts where measured, the estimate's where not (GB-s, minutes, API)
    real = replace(est, iot_units=measured["iot_units"], rules=measured["rules"],
                   sqs_requests=measured["rules"] + 2 * measured["invocations"],
                   invocations=measured["invocations"] + (est.invocations - math.ceil(est.up_messages)),
                   write_units=measured["write_units"],
                   read_units=est.read_units * measured["read_requests"] / max(est.read_requests, 1),
                   s3_gets=measured["s3_gets"])
    estimated, actual = pricing.price(spec, est, table).total, pricing.price(spec, real, table).total
    return "\n".join(lines), estimated, actual


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.estimate", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10, help="agents without loss (default 10)")
    parser.add_argument("--lossy", type=int, default=4, help="agents behind the loss injector (default 4)")
    parser.add_argument("--loss", type=float, default=0.10, help="first-arrival loss of the lossy agents")
    parser.add_argument("--size-mb", type=float, default=2.0, help="package payload in MiB (default 2)")
    parser.add_argument("--block-size", type=int, default=16384)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--dir", type=Path, default=CACHE / "estimate")
    parser.add_argument("--json", type=Path, default=CACHE / "estimate-results.json")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    directory = args.dir.resolve()
    os.environ["MOTO_ENABLE_RECORDING"] = "1"  # inherited by the moto server the stack starts
    os.environ["MOTO_RECORDER_FILEPATH"] = str(directory / "moto-recording.jsonl")
    (directory / "loss-events.jsonl").unlink(missing_ok=True)
    service = LossService(directory, device_workers=5, sweep_every=5.0)
    table = prices.load()
    results = []
    try:
        print(f"starting the local stack, {args.devices} agents and {args.lossy} lossy ones...", flush=True)
        service.start()
        clean = [f"est-{n:03d}" for n in range(args.devices)]
        lossy = [f"est-lossy-{n:03d}" for n in range(args.lossy)]
        for epn in clean:
            service.start_agent(epn)
        for epn in lossy:
            service.start_lossy_agent(epn, args.loss, 8, directory / "loss-events.jsonl")
        service.wait_registered(clean + lossy)
        groups = [(clean, 0.0), (lossy, args.loss)] if lossy else [(clean, 0.0)]
        for n, (epns, loss) in enumerate(groups, start=1):
            if not epns:
                continue
            result = rollout(service, epns, int(args.size_mb * MiB), args.block_size, args.window, loss, f"1.0.{n}",
                             args.timeout)
            events = directory / "loss-events.jsonl"
            result["dropped"] = sum('"e": "dropped"' in line for line in events.read_text().splitlines()) \
                if loss and events.exists() else 0
            text, estimated, actual = compare(result, table)
            result.update(estimated_usd=estimated, measured_usd=actual)
            results.append(result)
            print(f"\n{len(epns)} devices, {args.size_mb:g} MiB, {args.block_size // 1024} KiB blocks, window "
                  f"{args.window}, first-arrival loss {loss:.0%}: {result['succeeded']}/{len(epns)} SUCCEEDED in "
                  f"{result['seconds']:.1f}s; {result['batched']} device messages in "
                  f"{result['measured']['invocations']} handler batches; the injector dropped {result['dropped']} "
                  "first copies")
            print(text)
            error = (estimated - actual) / actual
            print(f"total with {table.name}: estimate ${estimated:.6f}, measured ${actual:.6f}, error {error:+.1%} "
                  f"(goal within {GOAL:.0%}: {'met' if abs(error) <= GOAL else 'missed'})", flush=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"raw results in {args.json}")
        return 0
    finally:
        service.stop()
        os.environ.pop("MOTO_ENABLE_RECORDING", None)


if __name__ == "__main__":
    sys.exit(main())
