"""Issue 4's transfer benchmark: one device, a 16 MiB package, our goodput beside the raw ceiling.

`python -m bench.transfer` (make bench-transfer) starts the local stack (local.stack: moto server,
mosquitto with mutual TLS, the API, the bridge), registers one real `ota-agent` process through the
API, uploads one signed package per block size and rolls each out in block mode. For each block size
it first measures the raw ceiling on the SAME broker (bench.ceiling: a bare paho sender and receiver,
TLS with certificates from the stack's CA), then our path, and prints goodput, ratio, bytes on the
wire per package byte and acks per block. A spy (the operator certificate, QoS 0) watches the
device's job/ack/get/status topics; blocks are counted from the execution's `blocks_sent`.
The harness (LocalService, Spy) is shared with bench.fleet. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests

from bench.ceiling import measure_ceiling, nodelay, publish_packet_bytes, tls_factory
from cli.client import ApiClient, Target
from local import procs, stack
from local.ca import LocalCA
from otaformat import wire
from otaformat.build import BuildSpec, SourceFile, build_full
from otaformat.manifest import format_timestamp
from otaformat.signing import generate_key, public_key_pem

CACHE = stack.PROJECT_DIR / ".bench-cache"
MODEL = "bench-m"
MiB = 1024 * 1024


def package_content(size: int) -> bytes:
    """`size` bytes like a real app: native libraries from .bench-cache/so when present, else random + text."""
    libraries = sorted((CACHE / "so").glob("*/*.so"))
    chunks: list[bytes] = []
    total = 0
    rounds = 0
    while total < size:
        for path in libraries or [None]:
            piece = path.read_bytes() if path else os.urandom(256 * 1024) + b"log line %d\n" * 2000
            # a small random prefix per copy: no two copies are the same bytes
            piece = os.urandom(64) + piece + f"round {rounds}\n".encode()
            chunks.append(piece)
            total += len(piece)
        rounds += 1
    return b"".join(chunks)[:size]


def build_package(key: Any, version: str, content: bytes, app: str = "bench") -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    spec = BuildSpec(app=app, version=version, models=(MODEL,), created=format_timestamp(now),
                     expires=format_timestamp(now + timedelta(days=7)), compression="none")
    return build_full(spec, [SourceFile("lib/payload.bin", content)], key)


def vmhwm_kb(pid: int) -> int | None:
    """Peak resident set (VmHWM) of a process in KiB, None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), 0.0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profiler:
    """py-spy (optional: `pip install py-spy`) recording the given processes into collapsed stacks."""

    def __init__(self, pids: dict[str, int], out_dir: Path | None) -> None:
        self.pids, self.out_dir = pids, out_dir
        self.spies: list[subprocess.Popen[bytes]] = []
        self.cpu: dict[str, float] = {}

    def __enter__(self) -> Profiler:
        self.cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.began = time.perf_counter()
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            for name, pid in self.pids.items():
                if name != "mosquitto":
                    self.spies.append(subprocess.Popen(
                        [exe, "record", "-p", str(pid), "-r", "250", "-f", "raw", "-o",
                         str(self.out_dir / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.began
        self.cpu = {name: cpu_seconds(pid) - self.cpu[name] for name, pid in self.pids.items()}
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)
        for spy in self.spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()


class LocalService:
    """The local stack plus what an operator does through the API: keys, packages, devices, agents, jobs."""

    def __init__(self, directory: Path, *, device_workers: int = 1, sweep_every: float = 2.0) -> None:
        self.directory = directory
        self.options = stack.StackOptions(directory / "stack", sweep_every=sweep_every,
                                          device_workers=device_workers)
        self.state: dict[str, Any] = {}
        self.agents: dict[str, procs.Started] = {}
        self.key = generate_key()
        self._api: ApiClient | None = None

    @property
    def api(self) -> ApiClient:
        assert self._api is not None, "start() first"
        return self._api

    def start(self) -> None:
        if stack.running(self.options.directory):
            stack.stop_all(self.options.directory)
        self.state = stack.up(self.options)
        self._api = ApiClient(Target(self.state["api_url"], self.state["token"]), timeout=120.0)
        pub = self.directory / "publisher.pub"
        pub.write_bytes(public_key_pem(self.key.public_key()))
        self.api.post("/keys", {"public_key": pub.read_text(), "name": "bench"})

    def pid(self, name: str) -> int:
        return next(int(p["pid"]) for p in self.state["processes"] if p["name"] == name)

    def upload(self, data: bytes, timeout: float = 300.0) -> str:
        upload = self.api.post("/packages", {"size": len(data)})
        reply = requests.put(upload["url"], data=data, timeout=300)
        reply.raise_for_status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            package = self.api.get(f"/packages/{upload['upload_id']}")
            if package.get("state") == "AVAILABLE":
                return str(upload["upload_id"])
            if package.get("state") not in (None, "PENDING"):
                raise RuntimeError(f"package {upload['upload_id']} is {package.get('state')}: {package.get('reasons')}")
            time.sleep(0.2)
        raise RuntimeError("package scan did not finish")

    def start_agent(self, epn: str, *, log_level: str = "WARNING") -> procs.Started:
        made = self.api.post("/devices", {"epn": epn, "model": MODEL})
        home = self.directory / "agents" / epn
        home.mkdir(parents=True, exist_ok=True)
        for old in ("data", "root"):
            if (home / old).exists():
                shutil.rmtree(home / old)
        config = home / "agent.toml"
        config.write_text(
            f'epn = "{epn}"\nmodel = "{MODEL}"\ndata_dir = "data"\ninstall_root = "root"\n'
            f'[registration]\napi_url = "{self.state["api_url"]}"\ntoken = "{made["registration_token"]}"\n'
            f'[trust]\npublisher_keys = ["{self.directory / "publisher.pub"}"]\n')
        env = dict(os.environ, PYTHONPATH=str(stack.PROJECT_DIR), OTA_AGENT_LOG=log_level)
        started = procs.start(f"agent {epn}", [sys.executable, "-m", "agent", "--config", str(config)],
                              home / "agent.log", env=env, cwd=stack.PROJECT_DIR)
        self.agents[epn] = started
        return started

    def wait_registered(self, epns: list[str], timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(epns)
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} device(s) did not register, e.g. {sorted(waiting)[0]}")
            devices = self.api.get("/devices", {"model": MODEL}).get("devices", [])
            waiting -= {d["epn"] for d in devices if d.get("state") == "REGISTERED"}
            for epn in list(waiting)[:20]:
                if not procs.is_alive(self.agents[epn].pid):
                    raise RuntimeError(f"agent {epn} died:\n{procs.log_tail(self.agents[epn])}")
            time.sleep(0.5)

    def create_job(self, upload_id: str, targets: dict[str, Any], block_size: int, window: int) -> dict[str, Any]:
        return self.api.post("/jobs", {"package_id": upload_id, "targets": targets, "mode": "block",
                                       "block_size": block_size, "window": window})  # type: ignore[no-any-return]

    def executions(self, job_id: str) -> list[dict[str, Any]]:
        return self.api.get(f"/jobs/{job_id}/executions").get("executions", [])  # type: ignore[no-any-return]

    def credentials(self, name: str) -> tuple[str, str]:
        """(cert, key) for an MQTT client id: the operator's for the cloud side, else a device cert from the CA."""
        if name.startswith("ota-cloud") or name == "spy":
            cert = self.state["certs"]["operator"]
            return cert["cert"], cert["key"]
        issued = LocalCA.create_or_load(Path(self.state["mqtt"]["ca"]).parent).issue(
            self.directory / "certs", name, name)
        return str(issued.cert), str(issued.key)

    def stop(self) -> None:
        for started in self.agents.values():
            procs.stop(started)
        self.agents.clear()
        if self.state:
            stack.stop_all(self.options.directory)


@dataclass
class Spy:
    """Watches device topics as the operator (QoS 0): what was published, how big, and when."""

    service: LocalService
    filters: tuple[str, ...]
    counts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    wire_bytes: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    events: list[tuple[float, str, str, bytes]] = field(default_factory=list)  # (time, epn, leaf, payload)
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: mqtt.Client | None = None

    def __enter__(self) -> Spy:
        mqtt_state = self.service.state["mqtt"]
        cert, key = self.service.credentials("spy")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy")
        client.tls_set(ca_certs=mqtt_state["ca"], certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
        nodelay(client)
        subscribed = threading.Event()
        client.on_subscribe = lambda *_a: subscribed.set()
        client.on_message = self._on_message
        client.connect(mqtt_state["host"], mqtt_state["port"])
        client.loop_start()
        client.subscribe([(f, 0) for f in self.filters])
        if not subscribed.wait(30):
            raise RuntimeError("spy: no SUBACK")
        self.client = client
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        _, epn, leaf = msg.topic.split("/", 2)
        with self.lock:
            self.counts[(epn, leaf)] += 1
            self.wire_bytes[(epn, leaf)] += publish_packet_bytes(msg.topic, len(msg.payload))
            if leaf != "blk":
                self.events.append((now, epn, leaf, bytes(msg.payload)))

    def statuses(self, epn: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            events = [(t, p) for t, e, leaf, p in self.events if e == epn and leaf == "status"]
        return [(t, json.loads(p)) for t, p in events]

    def first_status(self, epn: str, state: str, step: str | None = None) -> float | None:
        return next((t for t, s in self.statuses(epn) if s.get("state") == state
                     and (step is None or s.get("step") == step)), None)

    def full_ack_at(self, epn: str, block_count: int) -> float | None:
        with self.lock:
            acks = [(t, p) for t, e, leaf, p in self.events if e == epn and leaf == "ack"]
        return next((t for t, p in acks if wire.decode_ack(p).contiguous >= block_count), None)

    def wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False


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


def hot_spots(path: Path, top: int = 15) -> list[tuple[float, float, str]]:
    """From py-spy's collapsed stacks: (inclusive %, self %, function) of the busiest functions."""
    inclusive: dict[str, int] = defaultdict(int)
    own: dict[str, int] = defaultdict(int)
    total = 0
    for line in path.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split("/")[-1].split(":")[0] + ")"
                  for f in stack_text.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    skip = ("_bootstrap", "run (threading.py)", "<module>", "_run_module", "main (")
    ranked = sorted(((n, f) for f, n in inclusive.items() if not f.startswith(skip)), reverse=True)
    return [(100.0 * n / total, 100.0 * own[f] / total, f) for n, f in ranked[:top]] if total else []


def summary(runs: list[TransferRow]) -> list[TransferRow]:
    """Per block size, the run with the best goodput, with the best ceiling of all its runs."""
    best: dict[int, TransferRow] = {}
    ceilings: dict[int, float] = defaultdict(float)
    for r in runs:
        ceilings[r.block_size] = max(ceilings[r.block_size], r.ceiling_mb_s)
        if r.block_size not in best or r.ours_mb_s > best[r.block_size].ours_mb_s:
            best[r.block_size] = r
    return [replace(r, ceiling_mb_s=ceilings[b]) for b, r in best.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=16.0, help="package payload in MiB (default 16)")
    parser.add_argument("--block-sizes", default="4096,16384,65536")
    parser.add_argument("--window", type=int, default=64, help="blocks in flight (default 64)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per block size (default 2)")
    parser.add_argument("--epn", default="bench-dev-1", help="device id (its length is in every block's topic)")
    parser.add_argument("--device-workers", type=int, default=1, help="bridge pollers of the device queue")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the processes with py-spy into this directory (slows them down)")
    parser.add_argument("--dir", type=Path, default=CACHE / "transfer")
    parser.add_argument("--json", type=Path, default=CACHE / "transfer-results.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.block_sizes.split(",")]
    args.dir.mkdir(parents=True, exist_ok=True)
    service = LocalService(args.dir.resolve(), device_workers=args.device_workers)
    runs: list[TransferRow] = []
    try:
        print("starting the local stack and one agent...", flush=True)
        service.start()
        service.start_agent(args.epn)
        content = package_content(int(args.size_mb * MiB))
        service.wait_registered([args.epn])
        version = 0
        for repeat in range(args.repeat):
            for block_size in sizes:
                version += 1  # a new version per run: the device never sees a downgrade
                data = build_package(service.key, f"1.0.{version}", content)
                upload_id = service.upload(data)
                profile = args.profile / f"{block_size}-{repeat}" if args.profile else None
                runs.append(run_one(service, args.epn, upload_id, len(data), block_size, args.window, profile))
                r = runs[-1]
                print(f"  {block_size // 1024} KiB run {repeat + 1}: ceiling {r.ceiling_mb_s:.1f} MB/s, ours "
                      f"{r.ours_mb_s:.1f} MB/s ({r.ratio:.2f}); CPU per wall s {r.cpu}", flush=True)
                if profile:
                    for name in ("bridge", "moto", "agent", "api"):
                        if (profile / f"{name}.txt").exists():
                            print(f"    {name}: " + "; ".join(f"{f} {inc:.0f}%/{own:.0f}%" for inc, own, f
                                                             in hot_spots(profile / f"{name}.txt", 12)))
        print(f"\nall runs ({len(content)} bytes of payload, package {runs[0].package_bytes} bytes):")
        print(table(runs))
        print("\nbest run per block size (ceiling: best of its runs):")
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
