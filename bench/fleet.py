"""Issue 5's fleet benchmark: one group job to N real agents on the local stack, timed to the last SUCCEEDED.

`python -m bench.fleet` (make bench-fleet) starts the local stack (bench.harness.LocalService), starts
N `ota-agent` processes (the real agent, one process each, MQTT over mutual TLS with a certificate each
got by registering through the API), uploads a 1 MiB signed package and creates one job for the whole
model. It prints the time from job creation to the first, median and last SUCCEEDED, the messages
published per device in each direction, the CPU used per process and the peak memory (VmHWM) of the
bridge and of the agents. A spy (operator certificate, QoS 0) counts the job/ack/get/status messages;
block frames are counted from each execution's `blocks_sent`. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import CACHE, MODEL, LocalService, MiB, Profiler, Spy, build_package, package_content, vmhwm_kb
from local import procs

DEFAULT_CONFIGS = "32768:16,32768:64"  # 32768:16 are the service's defaults (chalicelib/services/jobs.py)


def mem_available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def start_fleet(service: LocalService, count: int, batch: int) -> list[str]:
    """Start `count` agents, `batch` at a time, each batch registered before the next starts."""
    epns = [f"fleet-{n:04d}" for n in range(1, count + 1)]
    began = time.perf_counter()
    for first in range(0, count, batch):
        group = epns[first:first + batch]
        for epn in group:
            service.start_agent(epn)
        service.wait_registered(group, timeout=600)
        print(f"  {first + len(group)}/{count} agents registered ({time.perf_counter() - began:.0f}s)", flush=True)
    return epns


def run(service: LocalService, epns: list[str], version: str, block_size: int, window: int,
        timeout: float) -> dict[str, Any]:
    data = build_package(service.key, version, package_content(MiB))
    upload_id = service.upload(data)
    pids = {name: service.pid(name) for name in ("bridge", "moto", "api", "mosquitto")}
    filters = ("ota/+/job", "ota/+/ack", "ota/+/get", "ota/+/status")
    with Spy(service, filters) as spy:
        time.sleep(1.0)
        with Profiler(pids, None) as profiler:
            began = time.perf_counter()
            job = service.create_job(upload_id, {"model": MODEL}, block_size, window)
            created = time.perf_counter() - began
            ids = {e["epn"]: e["execution_id"] for e in service.executions(job["job_id"])}

            def finished() -> dict[str, tuple[float, str]]:
                out: dict[str, tuple[float, str]] = {}
                with spy.lock:
                    events = [(t, e, p) for t, e, leaf, p in spy.events if leaf == "status"]
                for t, epn, payload in events:
                    status = json.loads(payload)
                    if (status.get("x") == ids.get(epn) and status.get("state") in ("SUCCEEDED", "FAILED", "REJECTED")
                            and epn not in out):
                        out[epn] = (t - began, status["state"])
                return out

            deadline = time.monotonic() + timeout
            last_print = 0.0
            while len(finished()) < len(ids) and time.monotonic() < deadline:
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    print(f"  {len(finished())}/{len(ids)} finished after {time.perf_counter() - began:.0f}s",
                          flush=True)
                time.sleep(0.2)
            done = finished()
        time.sleep(1.0)  # the inventories that follow the final statuses
    executions = service.executions(job["job_id"])
    times = sorted(t for t, state in done.values() if state == "SUCCEEDED")
    per_device = []
    for e in executions:
        epn = e["epn"]
        down = spy.counts[(epn, "job")] + int(e.get("blocks_sent", 0))
        up = spy.counts[(epn, "ack")] + spy.counts[(epn, "get")] + spy.counts[(epn, "status")]
        per_device.append((down, up, spy.counts[(epn, "ack")], int(e.get("retransmissions", 0)),
                           spy.counts[(epn, "get")]))
    agent_peaks = sorted(v for v in (vmhwm_kb(service.agents[epn].pid) for epn in epns) if v)
    return {
        "devices": len(ids), "succeeded": len(times), "package_bytes": len(data), "block_size": block_size,
        "window": window, "create_s": created, "first_s": times[0] if times else None,
        "median_s": statistics.median(times) if times else None, "last_s": times[-1] if times else None,
        "not_succeeded": {epn: state for epn, (_, state) in done.items() if state != "SUCCEEDED"},
        "missing": sorted(set(ids) - set(done)),
        "down_mean": statistics.mean(p[0] for p in per_device), "down_max": max(p[0] for p in per_device),
        "up_mean": statistics.mean(p[1] for p in per_device), "up_max": max(p[1] for p in per_device),
        "acks_mean": statistics.mean(p[2] for p in per_device), "gets_mean": statistics.mean(p[4] for p in per_device),
        "retransmissions": sum(p[3] for p in per_device),
        "cpu": {name: round(cpu / profiler.seconds, 2) for name, cpu in profiler.cpu.items()},
        "bridge_peak_kb": vmhwm_kb(pids["bridge"]), "moto_peak_kb": vmhwm_kb(pids["moto"]),
        "agent_peak_kb": {"one": vmhwm_kb(service.agents[epns[0]].pid), "median": statistics.median(agent_peaks),
                          "max": agent_peaks[-1]} if agent_peaks else None,
    }


def report(results: list[dict[str, Any]]) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = [
        "| devices | package | block / window | SUCCEEDED | first s | median s | last s | msgs down/device "
        "(mean, max) | msgs up/device (mean, max) | acks, gets /device | blocks resent (all devices) "
        "| bridge peak MB | agent peak MB (one, median, max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        agent = r["agent_peak_kb"] or {}
        lines.append(
            f"| {r['devices']} | {r['package_bytes'] / MiB:.2f} MiB | {r['block_size'] // 1024} KiB / {r['window']} "
            f"| {r['succeeded']} | {s(r['first_s'])} | {s(r['median_s'])} | {s(r['last_s'])} "
            f"| {r['down_mean']:.1f}, {r['down_max']} | {r['up_mean']:.1f}, {r['up_max']} "
            f"| {r['acks_mean']:.1f}, {r['gets_mean']:.1f} | {r['retransmissions']} "
            f"| {(r['bridge_peak_kb'] or 0) / 1024:.0f} | {(agent.get('one') or 0) / 1024:.0f}, "
            f"{(agent.get('median') or 0) / 1024:.0f}, {(agent.get('max') or 0) / 1024:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--batch", type=int, default=25, help="agents started (and registered) at a time")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"block_size:window of each rollout, one after the other (default {DEFAULT_CONFIGS}: "
                             "the service's defaults, then a window holding the whole package)")
    parser.add_argument("--sweep-every", type=float, default=5.0, help="seconds between sweeps (stack default 5)")
    parser.add_argument("--device-workers", type=int, default=5,
                        help="bridge pollers of the device queue (default 5, as Lambda starts on an SQS queue)")
    parser.add_argument("--plain-moto", action="store_true",
                        help="do not load bench/sqsfix into moto (its SQS then costs O(queue length) per message)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every device")
    parser.add_argument("--dir", type=Path, default=CACHE / "fleet")
    parser.add_argument("--json", type=Path, default=CACHE / "fleet-results.json")
    args = parser.parse_args(argv)
    need_mb = args.devices * 50 + 1500  # measured: about 47 MB peak RSS per agent
    if mem_available_mb() < need_mb:
        print(f"error: {args.devices} agents need about {need_mb} MB; {mem_available_mb()} MB available "
              f"(use --devices)", file=sys.stderr)
        return 2
    args.dir.mkdir(parents=True, exist_ok=True)
    service = LocalService(args.dir.resolve(), device_workers=args.device_workers,
                           fix_moto_sqs=not args.plain_moto, sweep_every=args.sweep_every)
    try:
        print(f"starting the local stack and {args.devices} agents...", flush=True)
        service.start()
        epns = start_fleet(service, args.devices, args.batch)
        alive = sum(procs.is_alive(a.pid) for a in service.agents.values())
        print(f"{alive} agent processes running; memory available {mem_available_mb()} MB; rolling out...",
              flush=True)
        configs = [(int(b), int(w)) for b, _, w in (c.partition(":") for c in args.configs.split(","))]
        results = []
        for n, (block_size, window) in enumerate(configs, start=1):
            result = run(service, epns, f"1.0.{n}", block_size, window, args.timeout)
            results.append(result)
            print(report([result]))
            print(f"job creation took {result['create_s']:.1f}s; CPU per wall second during the job: "
                  f"{result['cpu']}; moto peak {(result['moto_peak_kb'] or 0) / 1024:.0f} MB", flush=True)
            if result["not_succeeded"] or result["missing"]:
                print(f"not succeeded: {result['not_succeeded']}; no final status: {result['missing'][:10]}")
        print(f"\nmoto SQS fix {'off' if args.plain_moto else 'on'}; {args.device_workers} device-queue poller(s); "
              f"sweep every {args.sweep_every:g}s")
        print(report(results))
        args.json.write_text(json.dumps(results, indent=2))
        print(f"raw results in {args.json}")
        return 0
    finally:
        service.stop()


if __name__ == "__main__":
    sys.exit(main())
