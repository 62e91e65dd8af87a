"""Issue 13's fleet benchmark: one model-wide rollout to N simulated devices on the local stack, per N.

`python -m bench.fleet` (make bench-fleet) runs, for each N (default 100, 1000, 10000), in a fresh local
stack (bench.harness.LocalService, 5 device-queue pollers, moto's SQS fix, bench/countfix's counters):
registers N devices through the API (each its own EC P-256 key and certificate; timed apart), connects
them as bench.fleetsim sessions in a few processes (real MQTT over mutual TLS to the real mosquitto,
the real protocol: job document, frames, acks, gets, statuses, running SHA-256), waits for their
inventories to be handled, uploads one signed package and creates one job for the whole model. It
measures, from the job's creation to the last device's final status:

- time to complete, and relative to the first N;
- cloud publishes per device-block: every paho publish of a block frame by the cloud's processes
  (unicast `ota/{epn}/blk` plus group topics) / (N x blocks); 1.0 is one copy per device, a broadcast
  tends to 1/N plus the repairs;
- repair rate: blocks the cloud counts as resent (executions' `retransmissions`) / (N x blocks), and
  the duplicates the devices received per device-block;
- DynamoDB items written and Lambda-equivalent invocations (SQS batches handed to a handler, sweeps)
  per device-update, from the moto server and the bridge (bench/countfix);
- peak memory (VmHWM) of the bridge, mosquitto, moto, the API and the simulator processes.
Not a test: it asserts nothing. Results also go to .bench-cache/fleet-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.fleetsim.cloud import Counters, dynamo_writes, invocations, paged, since, wait_executions
from bench.fleetsim.register import register_fleet
from bench.fleetsim.runner import SimFleet
from bench.fleetsim.worker import raise_fd_limit
from bench.harness import CACHE, MODEL, LocalService, build_package, cpu_seconds, package_content, vmhwm_kb
from otaformat import wire

COUNTFIX = Path(__file__).resolve().parent / "countfix"
APPS = {"bench": "1.0.0"}


def start_stack(directory: Path, counts: Path, device_workers: int, sweep_every: float,
                settings: dict[str, str] | None = None) -> LocalService:
    """A fresh stack whose processes load bench/countfix (counters + moto's SQS fix)."""
    if counts.exists():
        shutil.rmtree(counts)
    counts.mkdir(parents=True)
    service = LocalService(directory, device_workers=device_workers, fix_moto_sqs=False, sweep_every=sweep_every,
                           settings=settings)
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "BENCH_FLEET_COUNTS")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COUNTFIX), saved["PYTHONPATH"]]))
    os.environ["BENCH_FLEET_COUNTS"] = str(counts)
    try:
        service.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return service


def one_run(n: int, args: argparse.Namespace) -> dict[str, Any]:
    base = args.dir / f"n{n}"
    counts = base / "counts"
    service = start_stack(base, counts, args.device_workers, args.sweep_every, getattr(args, "settings", None))
    counters = Counters(counts)
    fleet: SimFleet | None = None
    try:
        api, state = service.api, service.state
        epns = [f"sim-{i:05d}" for i in range(n)]
        print(f"[N={n}] registering {n} devices...", flush=True)
        began = time.perf_counter()
        step = max(100, n // 10)

        def registered(done: int, seconds: float) -> None:
            if done % step == 0:
                print(f"  {done}/{n} registered ({seconds:.0f}s)", flush=True)

        identities, ca_file = register_fleet(state["api_url"], state["token"], epns, MODEL, base / "devices",
                                             apps=APPS, workers=args.register_workers, progress=registered)
        registration_s = time.perf_counter() - began
        sim = fleet = SimFleet(identities, str(ca_file), state["mqtt"]["host"], int(state["mqtt"]["port"]), MODEL,
                               processes=args.processes, apps=APPS, stall_budget=args.stall_budget)
        began = time.perf_counter()
        sim.start()
        sim.wait_connected(n, args.timeout)
        connect_s = time.perf_counter() - began
        if sim.lost:
            print(f"  {len(sim.lost)} sessions lost, e.g. {next(iter(sim.lost.items()))}", flush=True)
        # the inventories every session published must be handled before the job starts
        sim.wait(lambda: counters.read().get("records:on_device_message", 0) >= sim.connected, args.timeout,
                   report=lambda: f"{counters.read().get('records:on_device_message', 0)}/{sim.connected} "
                                  "inventories handled")
        online_s = time.perf_counter() - began
        data = build_package(service.key, "1.1.0", package_content(args.package_kib * 1024))
        upload_id = service.upload(data)
        blocks = wire.block_count(len(data), args.block_size)
        before = counters.settled()
        print(f"[N={n}] {sim.connected} online ({connect_s:.0f}s to connect, {online_s:.0f}s to inventory); "
              f"rolling out {len(data)} bytes = {blocks} blocks of {args.block_size}, window {args.window}...",
              flush=True)
        pids = {name: service.pid(name) for name in ("bridge", "mosquitto", "moto", "api")}
        pids.update({f"sim{k}": pid for k, pid in enumerate(sim.pids)})
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        began, began_wall = time.perf_counter(), time.time()
        job = api.post("/jobs", job_body(upload_id, args))
        create_s = time.perf_counter() - began
        ids = {e["epn"]: e["execution_id"] for e in wait_executions(api, job["job_id"], sim.connected, args.timeout)}
        fanout_s = time.perf_counter() - began

        def progress() -> str:
            done = sim.finished(ids)
            ok = sum(o["state"] == "SUCCEEDED" for o in done.values())
            return f"{len(done)}/{len(ids)} finished ({ok} SUCCEEDED) after {time.perf_counter() - began:.0f}s"

        complete = sim.wait(lambda: len(sim.finished(ids)) >= len(ids), args.timeout, report=progress)
        done = sim.finished(ids)
        last = max((o["at"] for o in done.values()), default=time.time()) - began_wall
        cloud_done = sim.wait(lambda: api.get(f"/jobs/{job['job_id']}").get("state") != "ACTIVE", 60)
        cpu = {name: round((cpu_seconds(pid) - cpu_before[name]) / max(0.1, time.perf_counter() - began), 2)
               for name, pid in pids.items()}
        after = counters.settled()
        delta = since(after, before)
        executions = paged(api, f"/jobs/{job['job_id']}/executions", "executions")
        peaks = {name: vmhwm_kb(service.pid(name)) for name in ("bridge", "mosquitto", "moto", "api")}
        peaks.update({f"sim{k}": vmhwm_kb(pid) for k, pid in enumerate(sim.pids)})
        lost = len(sim.lost)
        device_totals = sim.stop()
        fleet = None
        device_blocks = max(1, len(ids) * blocks)
        block_publishes = delta.get("publish:blk", 0) + delta.get("publish:group", 0)
        states: dict[str, int] = {}
        for e in executions:
            states[e["state"]] = states.get(e["state"], 0) + 1
        return {
            "devices": n, "online": len(ids), "package_bytes": len(data), "block_size": args.block_size,
            "window": args.window, "blocks": blocks, "complete": complete, "cloud_completed": cloud_done,
            "registration_s": registration_s, "connect_s": connect_s, "create_s": create_s, "fanout_s": fanout_s,
            "last_s": last, "succeeded": sum(o["state"] == "SUCCEEDED" and o["hash_ok"] for o in done.values()),
            "device_states": {s: sum(o["state"] == s for o in done.values())
                              for s in {o["state"] for o in done.values()}},
            "reasons": _reasons(done.values()),
            "cloud_states": states, "lost": lost,
            "block_publishes": block_publishes, "unicast_publishes": delta.get("publish:blk", 0),
            "group_publishes": delta.get("publish:group", 0), "job_publishes": delta.get("publish:job", 0),
            "publishes_per_device_block": block_publishes / device_blocks,
            "repair_rate": sum(int(e.get("retransmissions", 0)) for e in executions) / device_blocks,
            "duplicates_per_device_block": device_totals.get("duplicates", 0) / device_blocks,
            "device_messages": device_totals.get("mqtt_published", 0),
            "dynamo_writes": dynamo_writes(delta), "dynamo_writes_per_device": dynamo_writes(delta) / max(1, len(ids)),
            "invocations": invocations(delta),
            "invocations_per_device": sum(invocations(delta).values()) / max(1, len(ids)),
            "device_totals": device_totals, "counts": delta, "peak_kb": peaks, "cpu_per_second": cpu,
        }
    finally:
        if fleet is not None:
            fleet.stop(timeout=10)
        service.stop()


def waves(args: argparse.Namespace) -> dict[str, Any] | None:
    """The job's staged waves from --wave-* (None: no `waves` in the body): {"size": N} | {"percent": P},
    plus "pause_seconds" or "interval_seconds"."""
    if args.wave_size is None and args.wave_percent is None:
        if args.wave_pause is not None or args.wave_interval is not None:
            raise SystemExit("--wave-pause/--wave-interval need --wave-size or --wave-percent")
        return None
    if args.wave_size is not None and args.wave_percent is not None:
        raise SystemExit("give --wave-size or --wave-percent, not both")
    if args.wave_pause is not None and args.wave_interval is not None:
        raise SystemExit("give --wave-pause or --wave-interval, not both")
    spec: dict[str, Any] = {"size": args.wave_size} if args.wave_size is not None else {"percent": args.wave_percent}
    if args.wave_pause is not None:
        spec["pause_seconds"] = args.wave_pause
    if args.wave_interval is not None:
        spec["interval_seconds"] = args.wave_interval
    return spec


def job_body(upload_id: str, args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"package_id": upload_id, "targets": {"model": MODEL}, "mode": "block",
                            "block_size": args.block_size, "window": args.window}
    staged = waves(args)
    if staged is not None:
        body["waves"] = staged
    return body


def _reasons(outcomes: Any) -> dict[str, int]:
    """How many devices ended with each reason (numbers cut off, so stalls at different counts group)."""
    counts: dict[str, int] = {}
    for o in outcomes:
        if o.get("reason"):
            key = o["reason"].split("(")[0].strip()
            counts[key] = counts.get(key, 0) + 1
    return counts


def report(results: list[dict[str, Any]]) -> str:
    first = results[0]["last_s"] if results else 1.0
    lines = ["| N | SUCCEEDED (hash ok) | time s | vs first | publishes / device-block | repair rate "
             "| dupes / device-block | DynamoDB writes / device | invocations / device | bridge / broker / "
             "moto peak MB | registration s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mb = {k: (v or 0) / 1024 for k, v in r["peak_kb"].items()}
        lines.append(
            f"| {r['devices']} | {r['succeeded']}/{r['online']} | {r['last_s']:.1f} | {r['last_s'] / first:.2f}x "
            f"| {r['publishes_per_device_block']:.3f} | {r['repair_rate']:.3f} "
            f"| {r['duplicates_per_device_block']:.3f} "
            f"| {r['dynamo_writes_per_device']:.1f} | {r['invocations_per_device']:.2f} "
            f"| {mb['bridge']:.0f} / {mb['mosquitto']:.0f} / {mb['moto']:.0f} | {r['registration_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="100,1000,10000",
                        help="fleet sizes, one run each (default %(default)s)")
    parser.add_argument("--package-kib", type=int, default=512, help="package payload in KiB (default 512)")
    parser.add_argument("--block-size", type=int, default=4096, help="bytes per block (default 4096)")
    parser.add_argument("--window", type=int, default=32, help="blocks in flight per device (default 32)")
    parser.add_argument("--stall-budget", type=float, default=120.0,
                        help="each device's stall budget in s (the reference agent's default 120; the job's "
                             "stall_timeout, default 300, caps it)")
    parser.add_argument("--processes", type=int, default=2, help="simulator processes (default 2)")
    parser.add_argument("--register-workers", type=int, default=16, help="registrations in flight (default 16)")
    parser.add_argument("--device-workers", type=int, default=5, help="bridge pollers of the device queue")
    parser.add_argument("--sweep-every", type=float, default=5.0, help="seconds between sweeps (default 5)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds each phase may take")
    parser.add_argument("--wave-size", type=int, help="staged rollout: devices per wave (job body waves.size)")
    parser.add_argument("--wave-percent", type=int, help="staged rollout: percent of the targets per wave")
    parser.add_argument("--wave-pause", type=int, help="staged rollout: seconds between a wave's end and the next")
    parser.add_argument("--wave-interval", type=int, help="staged rollout: seconds between wave starts")
    parser.add_argument("--dir", type=Path, default=CACHE / "fleet")
    parser.add_argument("--json", type=Path, default=CACHE / "fleet-results.json")
    args = parser.parse_args(argv)
    waves(args)  # refuse bad --wave-* combinations before any stack starts
    args.dir = args.dir.resolve()
    print(f"file descriptors: soft limit now {raise_fd_limit()} (the broker inherits it)", flush=True)
    results = []
    for n in (int(x) for x in args.devices.split(",")):
        result = one_run(n, args)
        results.append(result)
        print(report([result]), flush=True)
        print(f"  CPU seconds per second of rollout {result['cpu_per_second']}; peak KB {result['peak_kb']}")
        print(f"  invocations {result['invocations']}; cloud states {result['cloud_states']}; "
              f"device states {result['device_states']} {result['reasons']}; "
              f"publishes blk {result['unicast_publishes']}, group "
              f"{result['group_publishes']}, job {result['job_publishes']}; POST /jobs {result['create_s']:.1f}s, "
              f"all executions {result['fanout_s']:.1f}s", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    print(f"\npackage {args.package_kib} KiB, {args.block_size}-byte blocks, window {args.window}; "
          f"{args.device_workers} device-queue pollers; sweep every {args.sweep_every:g}s")
    print(report(results))
    print(f"raw results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
