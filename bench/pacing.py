"""Issue 12's pacing benchmark: paced block delivery at AWS IoT Core's per-connection limits, without sleeps.

`python -m bench.pacing` (make bench-pacing) runs the local stack (bench.harness) with
OTA_DEVICE_PUBLISH_RATE=100 and OTA_DEVICE_BYTE_RATE=524288, IoT Core's 100 publishes/s and 512 KiB/s
per connection, budgeted per execution and per second (chalicelib/domain/pacing.py) and continued by
delayed wakes on the device queue (services/pacing.py; moto delivers them when due, local/motodelay.py):

1. one device: a real `ota-agent` process, a package of `--size-mib` MiB in 32 KiB blocks, window 64.
   Goodput = package bytes / (its DOWNLOADING status -> its ack covering every block), printed as a
   share of 512 KiB/s; the ceiling at 32 KiB blocks is 15 frames (32,781 bytes each) per second =
   0.9375 of 512 KiB/s (a 16th frame would pass 524,288 bytes). Acks and gets per block as the spy saw.
2. a fleet: `--devices` simulated devices (bench.fleetsim: the real protocol over mutual TLS, acks by
   the agent's own policy, honouring `pace_ms`) of one model, one model-wide job of `--fleet-kib` KiB in
   32 KiB blocks, window 64: the group broadcast, paced by the group's own budget. Rollout time (job
   creation -> the last device's final status), paced and unpaced in fresh stacks, beside the limit's
   theoretical time (the paced blocks at 15 per second) plus the unpaced run's time as the setup.

The old sleeping pacing (issue 12 measured 37.7 s for 100 paced devices against 12 s unpaced, 0.94 acks
per block) is gone from the code; its figures are quoted, not re-run. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from bench import fleet
from bench.harness import CACHE, LocalService, MiB, Profiler, build_package, package_content
from bench.transfer import measure_ours
from otaformat import wire

IOT_BYTES = 512 * 1024
IOT_PUBLISHES = 100
PACED = {"OTA_DEVICE_PUBLISH_RATE": str(IOT_PUBLISHES), "OTA_DEVICE_BYTE_RATE": str(IOT_BYTES)}
BLOCK = 32 * 1024
WINDOW = 64


def frames_per_second(block_size: int) -> int:
    return min(IOT_PUBLISHES, IOT_BYTES // (wire.FRAME_HEADER.size + block_size))


def one_device(args: argparse.Namespace) -> dict[str, Any]:
    service = LocalService((args.dir / "one").resolve(), device_workers=args.device_workers, settings=PACED)
    epn = "pace-dev-1"
    try:
        print("[one device] starting the paced local stack and one agent...", flush=True)
        service.start()
        service.start_agent(epn)
        service.wait_registered([epn])
        data = build_package(service.key, "1.0.1", package_content(int(args.size_mib * MiB)))
        upload_id = service.upload(data)
        pids = {name: service.pid(name) for name in ("bridge", "moto", "api", "mosquitto")}
        transfer_s, e2e_s, view, spy = measure_ours(service, epn, upload_id, len(data), BLOCK, WINDOW,
                                                    Profiler(pids, None), timeout=args.timeout)
        blocks = wire.block_count(len(data), BLOCK)
        rate = len(data) / transfer_s
        return {"package_bytes": len(data), "blocks": blocks, "transfer_s": transfer_s, "e2e_s": e2e_s,
                "bytes_per_s": rate, "share_of_limit": rate / IOT_BYTES,
                "share_of_ceiling": rate / (frames_per_second(BLOCK) * BLOCK),
                "theoretical_s": blocks / frames_per_second(BLOCK),
                "acks": spy.counts[(epn, "ack")], "gets": spy.counts[(epn, "get")],
                "acks_per_block": spy.counts[(epn, "ack")] / blocks,
                "retransmissions": int(view.get("retransmissions", 0)), "blocks_sent": int(view["blocks_sent"])}
    finally:
        service.stop()


def fleet_run(args: argparse.Namespace, paced: bool) -> dict[str, Any]:
    options = argparse.Namespace(
        dir=args.dir / ("fleet-paced" if paced else "fleet-unpaced"), package_kib=args.fleet_kib, block_size=BLOCK,
        window=WINDOW, stall_budget=120.0, processes=args.processes, register_workers=16,
        device_workers=args.device_workers, sweep_every=5.0, timeout=args.timeout,
        settings=PACED if paced else None)
    print(f"[fleet, {'paced' if paced else 'unpaced'}] {args.devices} simulated devices...", flush=True)
    return fleet.one_run(args.devices, options)


def report(one: dict[str, Any] | None, paced: dict[str, Any] | None, unpaced: dict[str, Any] | None) -> str:
    lines = []
    if one is not None:
        lines += ["| package | blocks | transfer s (limit's s) | goodput KiB/s | / 512 KiB/s | / 15-frame ceiling "
                  "| acks/block | gets | resent |", "|---|---|---|---|---|---|---|---|---|",
                  f"| {one['package_bytes']} B | {one['blocks']} | {one['transfer_s']:.2f} ({one['theoretical_s']:.2f})"
                  f" | {one['bytes_per_s'] / 1024:.0f} | {one['share_of_limit']:.3f} | {one['share_of_ceiling']:.3f} "
                  f"| {one['acks_per_block']:.3f} | {one['gets']} | {one['retransmissions']} |", ""]
    if paced is not None:
        blocks = paced["blocks"]
        limit_s = math.ceil(blocks / frames_per_second(BLOCK))  # whole seconds of bursts
        setup = unpaced["last_s"] if unpaced is not None else 0.0
        lines += ["| fleet | devices (SUCCEEDED) | rollout s | fan-out s | limit's s | limit's s + unpaced rollout s "
                  "| publishes / device-block | duplicates / device-block | device messages / device "
                  "| device-queue records / device |", "|---|---|---|---|---|---|---|---|---|---|"]
        for name, run in (("paced", paced), ("unpaced", unpaced)):
            if run is None:
                continue
            online = max(1, run["online"])
            lines.append(f"| {name} | {run['online']} ({run['succeeded']}) | {run['last_s']:.1f} | "
                         f"{run['fanout_s']:.1f} | {limit_s if name == 'paced' else 0} | "
                         f"{limit_s + setup if name == 'paced' else setup:.1f} | "
                         f"{run['publishes_per_device_block']:.3f} | {run['duplicates_per_device_block']:.3f} | "
                         f"{run['device_messages'] / online:.1f} | "
                         f"{run['counts'].get('records:on_device_message', 0) / online:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacing", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=float, default=8.0, help="one device's package payload (default 8)")
    parser.add_argument("--devices", type=int, default=100, help="simulated fleet size (default 100)")
    parser.add_argument("--fleet-kib", type=int, default=1024, help="the fleet's package payload (default 1024)")
    parser.add_argument("--processes", type=int, default=2, help="simulator processes (default 2)")
    parser.add_argument("--device-workers", type=int, default=5, help="bridge pollers of the device queue")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: one, fleet, unpaced")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--dir", type=Path, default=CACHE / "pacing")
    parser.add_argument("--json", type=Path, default=CACHE / "pacing-results.json")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    args.dir.mkdir(parents=True, exist_ok=True)
    one = one_device(args) if "one" not in skip else None
    if one is not None:
        print(report(one, None, None), flush=True)
    paced = fleet_run(args, True) if "fleet" not in skip else None
    unpaced = fleet_run(args, False) if "fleet" not in skip and "unpaced" not in skip else None
    print(f"\nlimits: {IOT_PUBLISHES} publishes/s, {IOT_BYTES} B/s per device; {BLOCK // 1024} KiB blocks, "
          f"window {WINDOW}; at most {frames_per_second(BLOCK)} frames per second\n")
    print(report(one, paced, unpaced))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"one": one, "fleet_paced": paced, "fleet_unpaced": unpaced}, indent=2,
                                    default=str))
    print(f"raw results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
