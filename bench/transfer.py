"""Issue 4's transfer benchmark: one device, a 16 MiB package, our goodput beside the raw ceiling.

`python -m bench.transfer` (make bench-transfer) starts the local stack through bench.harness (moto
server, mosquitto with mutual TLS, the API, the bridge with 5 device-queue pollers), registers one real
`ota-agent` process through the API and, for each block_size:window configuration and repeat, builds
and uploads a new signed package version and rolls it out in block mode. Before each rollout it
measures the raw ceiling on the SAME broker (bench.ceiling: a bare paho sender and receiver, TLS with
certificates from the stack's CA, same window-and-ack scheme). Goodput is package bytes divided by the
time from the device's DOWNLOADING status to its ack covering every block (both seen by a spy that
subscribes as the operator at QoS 0); job creation to SUCCEEDED is printed too. Wire bytes are the MQTT
PUBLISH packets of every frame sent (from the execution's `blocks_sent`) plus the job, ack, get and
status messages the spy saw. `--profile DIR` records the bridge and the agent with py-spy and prints
where their wall time goes. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ceiling import measure_ceiling, publish_packet_bytes, tls_factory
from bench.harness import CACHE, LocalService, MiB, Profiler, Spy, build_package, hot_spots, package_content, vmhwm_kb
from local import procs
from otaformat import wire

PROFILED = {"bridge": "SqsPump.dispatch", "agent": "Agent.run"}  # process -> frame whose wall time is split
DEFAULT_CONFIGS = "4096:64,16384:64,65536:64,32768:16,4096:100"


@dataclass(frozen=True)
class TransferRow:
    block_size: int
    window: int
    package_bytes: int
    ceiling_mb_s: float
    transfer_s: float  # DOWNLOADING status -> ack covering every block
    e2e_s: float  # job creation -> SUCCEEDED status
    wire_bytes: int
    acks: int
    gets: int
    blocks: int
    retransmissions: int
    breakdown: dict[str, int]
    cpu: dict[str, float]  # CPU seconds per wall second of our run, per process

    @property
    def ours_mb_s(self) -> float:
        return self.package_bytes / self.transfer_s / 1e6

    @property
    def ratio(self) -> float:
        return self.ours_mb_s / self.ceiling_mb_s

    @property
    def overhead_pct(self) -> float:
        return 100.0 * (self.wire_bytes - self.package_bytes) / self.package_bytes

    @property
    def acks_per_block(self) -> float:
        return self.acks / self.blocks


def block_bytes(topic: str, package_size: int, block_size: int, sent: int) -> int:
    """PUBLISH bytes of every frame sent: each block once, plus (sent - count) full-size retransmissions."""
    count = wire.block_count(package_size, block_size)
    last = package_size - block_size * (count - 1)
    full = publish_packet_bytes(topic, wire.FRAME_HEADER.size + block_size)
    return full * (count - 1) + publish_packet_bytes(topic, wire.FRAME_HEADER.size + last) + full * max(0, sent - count)


def measure_ours(service: LocalService, epn: str, upload_id: str, package_size: int, block_size: int,
                 window: int, profiler: Profiler, timeout: float = 300.0) -> tuple[float, float, dict[str, Any], Spy]:
    """Roll one package out to one device; (transfer s, end-to-end s, execution view, spy)."""
    filters = tuple(f"ota/{epn}/{leaf}" for leaf in ("job", "ack", "get", "status"))
    with Spy(service, filters) as spy:
        with profiler:
            began = time.perf_counter()
            job = service.create_job(upload_id, {"devices": [epn]}, block_size, window)
            execution_id = service.executions(job["job_id"])[0]["execution_id"]

            def final() -> dict[str, Any] | None:
                return next((s for _, s in spy.statuses(epn) if s.get("x") == execution_id
                             and s.get("state") in ("SUCCEEDED", "FAILED", "REJECTED")), None)

            if not spy.wait(lambda: final() is not None, timeout):
                raise RuntimeError(f"no final status after {timeout:.0f}s:\n{procs.log_tail(service.agents[epn])}")
            outcome = final()
            assert outcome is not None
            if outcome["state"] != "SUCCEEDED":
                raise RuntimeError(f"execution {execution_id} {outcome['state']}: {outcome.get('reason')}")
        spy.wait(lambda: spy.counts[(epn, "status")] >= 5, 1.0)  # the inventory after the final status
    count = wire.block_count(package_size, block_size)
    accepted = spy.first_status(epn, "IN_PROGRESS", "DOWNLOADING")
    full = spy.full_ack_at(epn, count)
    succeeded = spy.first_status(epn, "SUCCEEDED")
    assert accepted is not None and full is not None and succeeded is not None
    view = service.api.get(f"/jobs/{job['job_id']}/executions/{epn}")
    return full - accepted, succeeded - began, view, spy


def run_one(service: LocalService, epn: str, upload_id: str, package_size: int, block_size: int,
            window: int, profile_dir: Path | None = None) -> TransferRow:
    factory = tls_factory(service.state["mqtt"]["host"], service.state["mqtt"]["port"],
                          service.state["mqtt"]["ca"], service.credentials)
    ceiling = measure_ceiling(factory, block_size=block_size, window=window, total_bytes=package_size,
                              device="bench-ceiling")
    pids = {name: service.pid(name) for name in ("bridge", "moto", "api", "mosquitto")}
    pids["agent"] = service.agents[epn].pid
    profiler = Profiler(pids, profile_dir)
    transfer_s, e2e_s, view, spy = measure_ours(service, epn, upload_id, package_size, block_size, window, profiler)
    breakdown = {leaf: spy.wire_bytes[(epn, leaf)] for leaf in ("job", "ack", "get", "status")}
    breakdown["blk"] = block_bytes(f"ota/{epn}/blk", package_size, block_size, int(view["blocks_sent"]))
    return TransferRow(block_size, window, package_size, ceiling.mb_per_s, transfer_s, e2e_s,
                       sum(breakdown.values()), spy.counts[(epn, "ack")], spy.counts[(epn, "get")],
                       wire.block_count(package_size, block_size), int(view["retransmissions"]), breakdown,
                       {name: round(cpu / profiler.seconds, 2) for name, cpu in profiler.cpu.items()})


def table(rows: list[TransferRow]) -> str:
    lines = ["| block size | window | ceiling MB/s | ours MB/s | ratio | job->SUCCEEDED s (MB/s) | wire overhead % "
             "| acks/block | gets | retransmitted |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.block_size // 1024} KiB | {r.window} | {r.ceiling_mb_s:.1f} | {r.ours_mb_s:.1f} | "
                     f"{r.ratio:.2f} | {r.e2e_s:.1f} ({r.package_bytes / r.e2e_s / 1e6:.1f}) | "
                     f"{r.overhead_pct:.2f} | {r.acks_per_block:.3f} | {r.gets} | {r.retransmissions} |")
    return "\n".join(lines)


def summary(runs: list[TransferRow]) -> list[TransferRow]:
    """Per (block size, window), the run with the median ratio: one real run, not a mix of several."""
    groups: dict[tuple[int, int], list[TransferRow]] = defaultdict(list)
    for r in runs:
        groups[(r.block_size, r.window)].append(r)
    return [sorted(g, key=lambda r: r.ratio)[(len(g) - 1) // 2] for g in groups.values()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=16.0, help="package payload in MiB (default 16)")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"block_size:window pairs to run (default {DEFAULT_CONFIGS}; the service's own "
                             "default is 32768:16, its largest window 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (default 3)")
    parser.add_argument("--epn", default="bench-dev-1", help="device id (its length is in every block's topic)")
    parser.add_argument("--device-workers", type=int, default=5,
                        help="bridge pollers of the device queue (default 5, as Lambda starts on an SQS queue)")
    parser.add_argument("--sweep-every", type=float, default=5.0, help="seconds between sweeps (stack default 5)")
    parser.add_argument("--plain-moto", action="store_true",
                        help="do not load bench/sqsfix into moto (its SQS then costs O(queue length) per message)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the processes with py-spy into this directory (slows them down)")
    parser.add_argument("--dir", type=Path, default=CACHE / "transfer")
    parser.add_argument("--json", type=Path, default=CACHE / "transfer-results.json")
    args = parser.parse_args(argv)
    configs = [(int(b), int(w)) for b, _, w in (c.partition(":") for c in args.configs.split(","))]
    args.dir.mkdir(parents=True, exist_ok=True)
    service = LocalService(args.dir.resolve(), device_workers=args.device_workers,
                           fix_moto_sqs=not args.plain_moto, sweep_every=args.sweep_every)
    runs: list[TransferRow] = []
    try:
        print("starting the local stack and one agent...", flush=True)
        service.start()
        service.start_agent(args.epn)
        content = package_content(int(args.size_mb * MiB))
        service.wait_registered([args.epn])
        version = 0
        for repeat in range(args.repeat):
            for block_size, window in configs:
                version += 1  # a new version per run: the device never sees a downgrade
                data = build_package(service.key, f"1.0.{version}", content)
                upload_id = service.upload(data)
                profile = args.profile / f"{block_size}-{window}-{repeat}" if args.profile else None
                runs.append(run_one(service, args.epn, upload_id, len(data), block_size, window, profile))
                r = runs[-1]
                print(f"  {block_size // 1024} KiB / {window} run {repeat + 1}: ceiling {r.ceiling_mb_s:.1f} MB/s, "
                      f"ours {r.ours_mb_s:.1f} MB/s ({r.ratio:.2f}); CPU per wall s {r.cpu}", flush=True)
                if profile:
                    for name, within in PROFILED.items():
                        if (profile / f"{name}.txt").exists():
                            samples, spots = hot_spots(profile / f"{name}.txt", within)
                            print(f"    {name}, {samples} samples in {within}: "
                                  + "; ".join(f"{f} {share:.0f}%" for share, f in spots), flush=True)
        print(f"\nall runs ({len(content)} bytes of payload, package {runs[0].package_bytes} bytes):")
        print(table(runs))
        print("\nmedian run (by ratio) per block size and window:")
        print(table(summary(runs)))
        args.json.write_text(json.dumps([{**r.__dict__, "ours_mb_s": r.ours_mb_s, "ratio": r.ratio,
                                          "overhead_pct": r.overhead_pct} for r in runs], indent=2))
        print(f"bridge peak RSS {vmhwm_kb(service.pid('bridge'))} KiB, agent {vmhwm_kb(service.agents[args.epn].pid)}"
              f" KiB; raw results in {args.json}")
        return 0
    finally:
        service.stop()


if __name__ == "__main__":
    sys.exit(main())
