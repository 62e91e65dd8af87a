"""Micro-benchmark of the local DynamoDB stand-in: requests per second, moto's path against local/motofast.py.

`python -m bench.ddb [--devices N] [--clients C]` starts the local moto server (local/motoserver.py, with
local/motoindex.py as always) twice, with `OTA_MOTO_FAST=0` (moto's dispatcher, response serialiser and
whole-table transaction copy) and with local/motofast.py and local/mototxn.py (the default), and runs the
same workload on each through the service's own repository (chalicelib/adapters/dynamo/, boto3): the
table provisioned as the stack does, N devices created (conditional PutItem), one job with N executions
(create_execution: TransactWriteItems each), every execution read (GetItem) and saved (conditional
PutItem, ALL_OLD), the devices read in batches of 100 (BatchGetItem), each device's executions listed
(Query, one item), the job's executions listed (Query, N items, paged by moto's 1 MB) and the active
executions listed (8 shard queries), each phase from C client threads (the server serialises DynamoDB
requests, so more clients measure the queue, not parallelism). Printed per phase: requests, requests per
second each way, and the ratio. Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.adapters.dynamo import DynamoRepository
from chalicelib.adapters.provision import ensure_table
from chalicelib.domain.models import Device, Execution, Job
from local import motoserver, procs

TABLE = "bench-ddb"


def _client(port: int) -> Any:
    return boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(max_pool_connections=32, retries={"max_attempts": 1}))


def _device(n: int) -> Device:
    return Device(epn=f"dev-{n:06d}", model="bench-m", state="REGISTERED", token_sha256="0" * 64,
                  token_expires=0.0, created_at=time.time(), registered_at=time.time(), agent_version="1.0.0",
                  apps={"fw": "1.0.0"}, certificate_id="c" * 64, public_key_sha256="k" * 64)


def _job(devices: int) -> Job:
    return Job(job_id="job-1", upload_id="up-1", mode="block", block_size=4096, window=32, stall_seconds=120,
               total_seconds=3600, targets=(), target_spec={"model": "bench-m"}, state="ACTIVE",
               created_at=time.time(), app="fw", app_version="2.0.0", package_size=525092,
               package_sha256="s" * 64, repository_key="packages/up-1", block_count=129, target_count=devices)


def _execution(n: int) -> Execution:
    now = time.time()
    return Execution(execution_id=f"job-1-{n:06d}", job_id="job-1", epn=f"dev-{n:06d}", state="QUEUED",
                     stream=n, mode="block", created_at=now, last_activity=now)


def _phase(clients: int, work: Sequence[Callable[[], Any]]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in pool.map(lambda f: f(), work):
            pass
    return time.perf_counter() - start


def workload(port: int, devices: int, clients: int) -> list[tuple[str, int, float]]:
    """(phase, DynamoDB requests, seconds) for one moto server."""
    db = _client(port)
    ensure_table(db, TABLE)
    repo = DynamoRepository(db, TABLE)
    from dataclasses import replace

    executions = [_execution(n) for n in range(devices)]
    results = []
    results.append(("PutItem (create device)", devices,
                    _phase(clients, [lambda n=n: repo.create_device(_device(n)) for n in range(devices)])))
    repo.create_job(_job(devices), ())
    results.append(("TransactWriteItems (create execution)", devices,
                    _phase(clients, [lambda e=e: repo.create_execution(e) for e in executions])))
    results.append(("GetItem (execution)", devices,
                    _phase(clients, [lambda e=e: repo.get_execution(e.execution_id) for e in executions])))
    started = [replace(e, state="IN_PROGRESS", version=2) for e in executions]
    # save_execution adds an UpdateItem (job counts) when the state changes: 2 requests each
    results.append(("PutItem ALL_OLD + UpdateItem (save execution)", 2 * devices,
                    _phase(clients, [lambda e=e: repo.save_execution(e) for e in started])))
    epns = [f"dev-{n:06d}" for n in range(devices)]
    results.append(("BatchGetItem (100 devices)", (devices + 99) // 100,
                    _phase(clients, [lambda s=s: repo.get_devices(epns[s : s + 100]) for s in range(0, devices, 100)])))
    results.append(("Query (a device's executions, 1 item)", devices,
                    _phase(clients, [lambda epn=epn: repo.list_device_executions(epn) for epn in epns])))
    pages: list[int] = []

    def job_listing() -> None:
        pages.append(len(repo.list_job_executions("job-1")))

    results.append((f"Query (the job's {devices} executions)", 5, _phase(1, [job_listing] * 5)))
    results.append(("Query (active executions, 8 shards)", 8 * 5,
                    _phase(1, [repo.list_active_executions] * 5)))
    return results


def run(fast: bool, devices: int, clients: int) -> list[tuple[str, int, float]]:
    directory = Path(tempfile.mkdtemp(prefix="bench-ddb-"))
    previous = os.environ.get("OTA_MOTO_FAST")
    os.environ["OTA_MOTO_FAST"] = "on" if fast else "0"
    try:
        started, port = motoserver.start(directory)
    finally:
        if previous is None:
            os.environ.pop("OTA_MOTO_FAST", None)
        else:
            os.environ["OTA_MOTO_FAST"] = previous
    try:
        return workload(port, devices, clients)
    finally:
        procs.stop(started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ddb", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    slow = run(False, args.devices, args.clients)
    fast = run(True, args.devices, args.clients)
    load = os.getloadavg()
    print(f"local DynamoDB stand-in, {args.devices} devices, {args.clients} clients, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'phase':<48} {'requests':>8} {'moto req/s':>11} {'fast req/s':>11} {'ratio':>6}")
    total = [0, 0.0, 0.0]
    for (name, count, before), (_, _, after) in zip(slow, fast, strict=True):
        total[0] += count
        total[1] += before
        total[2] += after
        print(f"{name:<48} {count:>8} {count / before:>11.1f} {count / after:>11.1f} {before / after:>5.1f}x")
    print(f"{'all':<48} {total[0]:>8} {total[0] / total[1]:>11.1f} {total[0] / total[2]:>11.1f} "
          f"{total[1] / total[2]:>5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
