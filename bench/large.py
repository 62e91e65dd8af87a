"""Issue 12's large-package benchmark: block mode at 16 MiB, in between and 1 GiB, throughput and peak memory.

`python -m bench.large` (make bench-large) starts the local stack through bench.harness (moto server with
bench/s3fix, which also loads bench/sqsfix; mosquitto with mutual TLS; the API; the bridge), starts one
real `ota-agent` with a package limit of 2 GiB, and for each size (ascending) builds a signed package
(compression none: the bytes on the wire are the package), uploads it, waits for the scan, rolls it out
in block mode (each size --repeat times, default 3, a new version each time) and measures, side by
side in one run:

- throughput: package bytes / (device's DOWNLOADING status -> its ack covering every block), and the
  ratio to the smallest size's (the goal: the largest within 1.5x, i.e. ratio >= 0.67);
- blocks sent beyond one per block (retransmissions);
- peak memory per process during that size's upload + scan + rollout, sampled from /proc every 0.1 s:
  RssAnon (heap: what a process holds) and VmRSS (also counts mapped file pages, e.g. the agent's
  mmap of the verified content, which the kernel can drop), for the agent, the API (where nothing of
  the package passes but the presigned URL), the bridge (which runs the staging scan and every device
  handler, as Lambda would) and moto (the S3 stand-in: it holds every object in a spooled buffer).

Not a test: it asserts nothing. The 1 GiB run takes minutes and needs about 6 GiB of disk (spool,
content, install, kept base) and several GiB of memory in moto and the bridge's scan.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import CACHE, LocalService, MiB, build_package, package_content
from bench.transfer import measure_ours
from local import procs, stack
from otaformat import wire

S3_FIX = Path(__file__).resolve().parent / "s3fix"
PROCESSES = ("agent", "api", "bridge", "moto")
DEFAULT_SIZES = "16,256,1024"


def _status_kb(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "VmHWM"):
                values[name] = int(rest.split()[0])
    except OSError:
        pass
    return values


class PeakSampler:
    """Peak RssAnon and VmRSS of some processes while the block runs (sampled every `every` s)."""

    def __init__(self, pids: dict[str, int], every: float = 0.1) -> None:
        self.pids, self.every = pids, every
        self.peak: dict[str, dict[str, int]] = {name: {"RssAnon": 0, "VmRSS": 0} for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                values = _status_kb(pid)
                for field in ("RssAnon", "VmRSS"):
                    self.peak[name][field] = max(self.peak[name][field], values.get(field, 0))
            self._stop.wait(self.every)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_agent(service: LocalService, epn: str, max_package: int) -> procs.Started:
    """bench.harness's start_agent with a package limit for large packages."""
    config = service.agent_config(epn)
    with config.open("a") as f:
        f.write(f"[limits]\nmax_package_size = {max_package}\n")
    env = dict(os.environ, PYTHONPATH=str(stack.PROJECT_DIR), OTA_AGENT_LOG="WARNING")
    started = procs.start(f"agent {epn}", [sys.executable, "-m", "agent", "--config", str(config)],
                          config.parent / "agent.log", env=env, cwd=stack.PROJECT_DIR)
    service.agents[epn] = started
    return started


def start_stack(service: LocalService, max_package: int) -> None:
    """Start the stack with bench/s3fix (and through it bench/sqsfix) in moto and a package limit of
    max_package bytes (the stack passes no OTA_* variable through, so its base environment is extended)."""
    saved_path, saved_env = os.environ.get("PYTHONPATH"), stack.base_env
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(S3_FIX), saved_path]))

    def base_env(*args: Any, **kwargs: Any) -> dict[str, str]:
        return {**saved_env(*args, **kwargs), "OTA_MAX_PACKAGE_BYTES": str(max_package)}

    stack.base_env = base_env  # type: ignore[assignment]
    try:
        service.start()
    finally:
        stack.base_env = saved_env  # type: ignore[assignment]
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path


def run_size(service: LocalService, epn: str, size_mib: int, version: int, block_size: int,
             window: int) -> dict[str, Any]:
    content = package_content(size_mib * MiB)
    data = build_package(service.key, f"2.0.{version}", content)
    del content
    pids = {name: service.pid(name) for name in ("api", "bridge", "moto")}
    pids["agent"] = service.agents[epn].pid
    with PeakSampler(pids) as sampler:
        began = time.perf_counter()
        upload_id = service.upload(data, timeout=1800.0)
        scanned = time.perf_counter() - began
        size = len(data)
        del data
        transfer_s, e2e_s, view, _ = measure_ours(service, epn, upload_id, size, block_size, window,
                                                  _NoProfiler(), timeout=3600.0)
    count = wire.block_count(size, block_size)
    return {"size_mib": size_mib, "package_bytes": size, "upload_scan_s": round(scanned, 1),
            "transfer_s": round(transfer_s, 1), "e2e_s": round(e2e_s, 1),
            "mb_s": size / transfer_s / 1e6, "blocks": count, "blocks_sent": int(view["blocks_sent"]),
            "resent_pct": 100.0 * (int(view["blocks_sent"]) - count) / count,
            "peak_kb": sampler.peak}


class _NoProfiler:
    def __enter__(self) -> _NoProfiler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size, the run with the median throughput (one real run), memory = the highest peak of them all."""
    out = []
    for size in sorted({r["size_mib"] for r in rows}):
        runs = sorted((r for r in rows if r["size_mib"] == size), key=lambda r: r["mb_s"])
        chosen = dict(runs[(len(runs) - 1) // 2])
        chosen["peak_kb"] = {p: {f: max(r["peak_kb"][p][f] for r in runs) for f in ("RssAnon", "VmRSS")}
                             for p in PROCESSES}
        out.append(chosen)
    return out


def table(rows: list[dict[str, Any]], base: float) -> str:
    head = ("| package | upload+scan s | transfer s | MB/s | vs smallest | resent % | "
            + " | ".join(f"{p} anon / rss MB" for p in PROCESSES) + " |")
    lines = [head, "|" + "---|" * (6 + len(PROCESSES))]
    for r in rows:
        mem = " | ".join(f"{r['peak_kb'][p]['RssAnon'] / 1024:.0f} / {r['peak_kb'][p]['VmRSS'] / 1024:.0f}"
                         for p in PROCESSES)
        lines.append(f"| {r['size_mib']} MiB | {r['upload_scan_s']} | {r['transfer_s']} | {r['mb_s']:.1f} | "
                     f"{r['mb_s'] / base:.2f} | {r['resent_pct']:.1f} | {mem} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"package sizes in MiB (default {DEFAULT_SIZES})")
    parser.add_argument("--block-size", type=int, default=65536)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (default 3; the median is kept)")
    parser.add_argument("--epn", default="bench-large-1")
    parser.add_argument("--device-workers", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=CACHE / "large")
    parser.add_argument("--json", type=Path, default=CACHE / "large-results.json")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    limit = 2 * max(sizes) * MiB + 16 * MiB
    args.dir.mkdir(parents=True, exist_ok=True)
    service = LocalService(args.dir.resolve(), device_workers=args.device_workers, fix_moto_sqs=False)
    rows: list[dict[str, Any]] = []
    try:
        print("starting the local stack (moto with bench/s3fix) and one agent...", flush=True)
        start_stack(service, limit)
        start_agent(service, args.epn, limit)
        service.wait_registered([args.epn])
        runs = [size for size in sizes for _ in range(args.repeat)]
        for version, size_mib in enumerate(runs, 1):
            print(f"  {size_mib} MiB: build, upload, scan, roll out ({args.block_size // 1024} KiB / "
                  f"window {args.window})...", flush=True)
            rows.append(run_size(service, args.epn, size_mib, version, args.block_size, args.window))
            r = rows[-1]
            print(f"    {r['mb_s']:.1f} MB/s, transfer {r['transfer_s']} s, resent {r['resent_pct']:.1f} %, "
                  f"peaks (RssAnon MB) " + ", ".join(f"{p} {r['peak_kb'][p]['RssAnon'] / 1024:.0f}"
                                                    for p in PROCESSES), flush=True)
        print(f"\nblock mode, {args.block_size // 1024} KiB blocks, window {args.window}; memory = peak during "
              "that run's upload, scan and rollout (RssAnon / VmRSS MB):")
        summary = medians(rows)
        print("\nevery run:")
        print(table(rows, summary[0]["mb_s"]))
        print("\nmedian run per size (throughput ratio against the smallest size's median; goal >= 0.67, i.e. "
              "within 1.5x; memory: highest peak over the runs of that size):")
        print(table(summary, summary[0]["mb_s"]))
        args.json.write_text(json.dumps(rows, indent=2))
        print(f"raw results in {args.json}")
        return 0
    finally:
        service.stop()


if __name__ == "__main__":
    sys.exit(main())
