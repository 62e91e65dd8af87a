"""Block transfer under first-arrival loss: time to complete with 10 % loss against no loss, side by side.

`python -m bench.loss` (make bench-loss) starts the local stack through bench.harness (moto server,
mosquitto with mutual TLS, the API, the bridge with 5 device-queue pollers, sweep every 5 s) and two
real `ota-agent` processes registered through the API: `bench-dev-1` as shipped and `bench-dev-2` run
through `python -m bench.loss agent`, which is the same agent with a loss injector in front of its block
handler. The injector drops a block frame the FIRST time it arrives, for a seeded 10 % of the indices
of each stream (`FirstArrivalLoss`); every later copy (a repair) passes. For each block_size:window
configuration and repeat, one new signed package version is rolled out to the clean device, then the
same upload to the lossy one. Measured like bench.transfer: the device's DOWNLOADING status to its ack
covering every block, both seen by an operator spy; the ratio is lossy / clean of the median runs.
Repair latency is, per dropped block, the time from the drop to the arrival of its repaired copy, both
logged by the injector in the agent process. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import CACHE, LocalService, MiB, Profiler, build_package, package_content
from local import procs, stack
from otaformat import wire

DEFAULT_CONFIGS = "32768:64,4096:64"
GOAL_RATIO = 1.5


@dataclass
class FirstArrivalLoss:
    """Drops the first arrival of a seeded `rate` share of the block indices of every stream.

    Whether (stream, index) is doomed depends only on the seed, the stream and the index (a hash), not
    on the order frames arrive in; only its first arrival is dropped, every later copy passes."""

    rate: float
    seed: int
    seen: set[tuple[int, int]] = field(default_factory=set)

    def doomed(self, stream: int, index: int) -> bool:
        digest = hashlib.blake2b(f"{self.seed}:{stream}:{index}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.rate * 2**64

    def drops(self, stream: int, index: int) -> bool:
        """True if this arrival of (stream, index) must be dropped (the caller discards the frame)."""
        key = (stream, index)
        first = key not in self.seen
        self.seen.add(key)
        return first and self.doomed(stream, index)


def frame_key(payload: bytes) -> tuple[int, int] | None:
    """(stream, index) from a block frame's header, None if too short to be one."""
    if len(payload) < wire.FRAME_HEADER.size:
        return None
    _, stream, raw_index, _, _ = wire.FRAME_HEADER.unpack_from(payload)
    return stream, int.from_bytes(raw_index, "big")


def lossy(on_block: Callable[[Any, bytes], None], loss: FirstArrivalLoss,
          log: Callable[[str, int, int], None]) -> Callable[[Any, bytes], None]:
    """`on_block` with `loss` in front of it: a dropped frame never reaches the agent. `log(event, stream,
    index)` is told of every drop and of the first arrival that passes after a drop ("repaired")."""
    pending: set[tuple[int, int]] = set()

    def on_block_with_loss(agent: Any, payload: bytes) -> None:
        key = frame_key(payload)
        if key is not None and loss.drops(*key):
            pending.add(key)
            log("dropped", *key)
            return
        if key in pending:
            pending.discard(key)
            log("repaired", *key)
        on_block(agent, payload)

    return on_block_with_loss


def agent_main(argv: list[str]) -> int:
    """`python -m bench.loss agent --loss R --seed S --events FILE -- <ota-agent arguments>`."""
    parser = argparse.ArgumentParser(prog="python -m bench.loss agent")
    parser.add_argument("--loss", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--events", type=Path, required=True)
    args, rest = parser.parse_known_args(argv)
    from agent import cli, runtime

    events = args.events.open("a", buffering=1)

    def log(event: str, stream: int, index: int) -> None:
        events.write(json.dumps({"t": time.time(), "e": event, "s": stream, "i": index}) + "\n")

    runtime.Agent.on_block = lossy(runtime.Agent.on_block, FirstArrivalLoss(args.loss, args.seed), log)  # type: ignore[method-assign,assignment]
    return cli.main([a for a in rest if a != "--"])


class LossService(LocalService):
    """The harness's service; `start_lossy_agent` runs an agent through `bench.loss agent`."""

    def start_lossy_agent(self, epn: str, rate: float, seed: int, events: Path) -> procs.Started:
        config = self.agent_config(epn)
        env = dict(os.environ, PYTHONPATH=str(stack.PROJECT_DIR), OTA_AGENT_LOG="WARNING")
        argv = [sys.executable, "-m", "bench.loss", "agent", "--loss", str(rate), "--seed", str(seed),
                "--events", str(events), "--", "--config", str(config)]
        started = procs.start(f"agent {epn}", argv, config.parent / "agent.log", env=env, cwd=stack.PROJECT_DIR)
        self.agents[epn] = started
        return started


@dataclass(frozen=True)
class Run:
    block_size: int
    window: int
    lossy: bool
    transfer_s: float
    e2e_s: float
    blocks: int
    gets: int
    retransmissions: int
    dropped: int = 0
    repair_s: tuple[float, ...] = ()


def repairs(events: Path, stream: int) -> tuple[int, list[float]]:
    """(blocks dropped, seconds from each drop to its repaired copy) for one stream."""
    dropped: dict[int, float] = {}
    latency: list[float] = []
    for line in events.read_text().splitlines() if events.exists() else []:
        event = json.loads(line)
        if event["s"] != stream:
            continue
        if event["e"] == "dropped":
            dropped[event["i"]] = event["t"]
        elif event["i"] in dropped:
            latency.append(event["t"] - dropped[event["i"]])
    return len(dropped), latency


def run_one(service: LossService, epn: str, upload_id: str, size: int, block_size: int, window: int,
            events: Path | None) -> Run:
    from bench.transfer import measure_ours

    transfer_s, e2e_s, view, spy = measure_ours(service, epn, upload_id, size, block_size, window,
                                                Profiler({}, None))
    blocks = wire.block_count(size, block_size)
    dropped, latency = 0, list[float]()
    if events is not None:
        job_stream = next(json.loads(p)["stream"] for _, e, leaf, p in spy.events if e == epn and leaf == "job")
        dropped, latency = repairs(events, job_stream)
    return Run(block_size, window, events is not None, transfer_s, e2e_s, blocks, spy.counts[(epn, "get")],
               int(view["retransmissions"]), dropped, tuple(latency))


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.transfer_s)[(len(runs) - 1) // 2]


def table(runs: list[Run]) -> str:
    lines = ["| block size | window | clean s (median) | 10 % loss s (median) | ratio | dropped | repair latency "
             "median / max s | gets (clean, lossy) | retransmitted (clean, lossy) |",
             "|---|---|---|---|---|---|---|---|---|"]
    configs = sorted({(r.block_size, r.window) for r in runs}, key=lambda c: (-c[0], c[1]))
    for block_size, window in configs:
        clean = median_run([r for r in runs if (r.block_size, r.window) == (block_size, window) and not r.lossy])
        hit = median_run([r for r in runs if (r.block_size, r.window) == (block_size, window) and r.lossy])
        latency = f"{statistics.median(hit.repair_s):.2f} / {max(hit.repair_s):.2f}" if hit.repair_s else "-"
        lines.append(f"| {block_size // 1024} KiB | {window} | {clean.transfer_s:.2f} | {hit.transfer_s:.2f} | "
                     f"{hit.transfer_s / clean.transfer_s:.2f}x | {hit.dropped} of {hit.blocks} | {latency} | "
                     f"{clean.gets}, {hit.gets} | {clean.retransmissions}, {hit.retransmissions} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:
        return agent_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.loss", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=16.0, help="package payload in MiB (default 16)")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"block_size:window pairs ({DEFAULT_CONFIGS})")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration and device (default 3)")
    parser.add_argument("--loss", type=float, default=0.10, help="share of blocks dropped on first arrival")
    parser.add_argument("--seed", type=int, default=8, help="seed of the loss injector")
    parser.add_argument("--device-workers", type=int, default=5)
    parser.add_argument("--sweep-every", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, default=CACHE / "loss")
    parser.add_argument("--json", type=Path, default=CACHE / "loss-results.json")
    args = parser.parse_args(argv)
    configs = [(int(b), int(w)) for b, _, w in (c.partition(":") for c in args.configs.split(","))]
    args.dir.mkdir(parents=True, exist_ok=True)
    events = args.dir.resolve() / "loss-events.jsonl"
    events.unlink(missing_ok=True)
    service = LossService(args.dir.resolve(), device_workers=args.device_workers, sweep_every=args.sweep_every)
    runs: list[Run] = []
    try:
        print("starting the local stack and two agents (one behind the loss injector)...", flush=True)
        service.start()
        service.start_agent("bench-dev-1")
        service.start_lossy_agent("bench-dev-2", args.loss, args.seed, events)
        content = package_content(int(args.size_mb * MiB))
        service.wait_registered(["bench-dev-1", "bench-dev-2"])
        version = 0
        for repeat in range(args.repeat):
            for block_size, window in configs:
                version += 1
                data = build_package(service.key, f"1.0.{version}", content)
                upload_id = service.upload(data)
                clean = run_one(service, "bench-dev-1", upload_id, len(data), block_size, window, None)
                hit = run_one(service, "bench-dev-2", upload_id, len(data), block_size, window, events)
                runs += [clean, hit]
                print(f"  {block_size // 1024} KiB / {window} run {repeat + 1}: clean {clean.transfer_s:.2f} s, "
                      f"{args.loss:.0%} loss {hit.transfer_s:.2f} s ({hit.transfer_s / clean.transfer_s:.2f}x), "
                      f"{hit.dropped} dropped, {hit.gets} gets, {hit.retransmissions} resent", flush=True)
        print(f"\nmedian runs ({len(content)} bytes of payload, first-arrival loss {args.loss:.0%}, seed {args.seed}):")
        print(table(runs))
        worst = max(median_run([r for r in runs if (r.block_size, r.window) == c and r.lossy]).transfer_s
                    / median_run([r for r in runs if (r.block_size, r.window) == c and not r.lossy]).transfer_s
                    for c in configs)
        print(f"goal: ratio <= {GOAL_RATIO}x: {'met' if worst <= GOAL_RATIO else 'missed'} (worst {worst:.2f}x)")
        args.json.write_text(json.dumps([r.__dict__ for r in runs], indent=2))
        return 0
    finally:
        service.stop()


if __name__ == "__main__":
    sys.exit(main())
