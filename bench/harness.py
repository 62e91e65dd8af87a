"""The benchmarks' harness: the local stack driven like an operator would, a spy on the broker, a profiler.

`LocalService` starts the local stack (local.stack: moto server, mosquitto with mutual TLS, the API,
the bridge), registers a publisher key, uploads signed packages, registers devices and starts real
`ota-agent` processes for them (each registers through the API and gets its certificate), and creates
jobs. `Spy` subscribes as the operator (QoS 0) and records what devices and the cloud publish, with
MQTT PUBLISH sizes and arrival times. `Profiler` reads CPU time from /proc and optionally records
py-spy stacks (`pip install py-spy`; not a requirement). By default the stack's moto server gets
bench/sqsfix (moto's SQS made O(1) per message; see there). Shared by bench.transfer and bench.fleet;
it measures nothing by itself.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests

from bench.ceiling import nodelay, publish_packet_bytes
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
SQS_FIX = Path(__file__).resolve().parent / "sqsfix"


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


def build_package(key: Any, version: str, content: bytes, app: str = "bench",
                  models: tuple[str, ...] = (MODEL,)) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    spec = BuildSpec(app=app, version=version, models=models, created=format_timestamp(now),
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
        self.cpu: dict[str, float] = {}  # CPU seconds used inside the block, per process
        self.began = self.seconds = 0.0

    def __enter__(self) -> Profiler:
        self.cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.began = time.perf_counter()
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            for name, pid in self.pids.items():
                if name != "mosquitto":
                    self.spies.append(subprocess.Popen(
                        [exe, "record", "--idle", "-p", str(pid), "-r", "250", "-f", "raw", "-o",
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

    def __init__(self, directory: Path, *, device_workers: int = 1, sweep_every: float = 5.0,
                 fix_moto_sqs: bool = True, settings: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.fix_moto_sqs = fix_moto_sqs
        self.options = stack.StackOptions(directory / "stack", sweep_every=sweep_every,
                                          device_workers=device_workers, settings=tuple((settings or {}).items()))
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
        saved = os.environ.get("PYTHONPATH")
        if self.fix_moto_sqs:  # the stack's processes inherit PYTHONPATH: bench/sqsfix patches moto's SQS
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SQS_FIX), saved]))
        try:
            self.state = stack.up(self.options)
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
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

    def agent_config(self, epn: str) -> Path:
        """Pre-authorise `epn` and write a fresh agent home (empty data and install root); its config."""
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
        return config

    def start_agent(self, epn: str, *, log_level: str = "WARNING") -> procs.Started:
        config = self.agent_config(epn)
        env = dict(os.environ, PYTHONPATH=str(stack.PROJECT_DIR), OTA_AGENT_LOG=log_level)
        started = procs.start(f"agent {epn}", [sys.executable, "-m", "agent", "--config", str(config)],
                              config.parent / "agent.log", env=env, cwd=stack.PROJECT_DIR)
        self.agents[epn] = started
        return started

    def wait_registered(self, epns: list[str], timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(epns)
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} device(s) did not register, e.g. {sorted(waiting)[0]}")
            devices = self.api.get_all("/devices", "devices", {"model": MODEL})["devices"]
            waiting -= {d["epn"] for d in devices if d.get("state") == "REGISTERED"}
            for epn in list(waiting)[:20]:
                if not procs.is_alive(self.agents[epn].pid):
                    raise RuntimeError(f"agent {epn} died:\n{procs.log_tail(self.agents[epn])}")
            time.sleep(0.5)

    def create_job(self, upload_id: str, targets: dict[str, Any], block_size: int, window: int,
                   timeout: float = 300.0) -> dict[str, Any]:
        """Create the job and return it once its background fan-out has created every execution."""
        job: dict[str, Any] = self.api.post("/jobs", {"package_id": upload_id, "targets": targets, "mode": "block",
                                                      "block_size": block_size, "window": window})
        deadline = time.monotonic() + timeout
        while not job.get("fanout_done", True):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job['job_id']}: fan-out not done after {timeout:.0f} s")
            time.sleep(0.1)
            job = self.api.get(f"/jobs/{job['job_id']}")
        return job

    def executions(self, job_id: str) -> list[dict[str, Any]]:
        return self.api.get_all(f"/jobs/{job_id}/executions", "executions")["executions"]  # every page

    def credentials(self, name: str) -> tuple[str, str]:
        """(cert, key) for an MQTT client id: the operator's for the cloud side, else a device cert from the CA."""
        if name.startswith("ota-cloud") or name == "spy":
            cert = self.state["certs"]["operator"]
            return cert["cert"], cert["key"]
        issued = LocalCA.create_or_load(Path(self.state["mqtt"]["ca"]).parent).issue(
            self.directory / "certs", name, name)
        return str(issued.cert), str(issued.key)

    def stop(self) -> None:
        for started in self.agents.values():  # SIGTERM them all first: each stops within a second
            if procs.is_alive(started.pid) and procs.proc_start_time(started.pid) == started.start_time:
                with contextlib.suppress(OSError):
                    os.killpg(started.pid, signal.SIGTERM)
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


OUR_CODE = ("chalicelib/", "local/", "agent/", "otaformat/", "app.py")


def hot_spots(path: Path, within: str, top: int = 8) -> tuple[int, list[tuple[float, str]]]:
    """Where the wall time under a frame goes, from py-spy's collapsed stacks (recorded with --idle).

    Only samples whose stack passes through a frame containing `within` count; each is charged to the
    deepest frame of the project's own code (chalicelib, local, agent, otaformat), i.e. the line of ours
    that was running or waiting for a library call. Returns (samples, [(share %, "function (file:line)")]).
    """
    charged: dict[str, int] = defaultdict(int)
    total = 0
    for line in path.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        frames = stack_text.split(";")
        start = next((i for i, f in enumerate(frames) if within in f), None)
        if not count_text.isdigit() or start is None:
            continue
        ours = [f for f in frames[start:] if f.rpartition(" (")[2].startswith(OUR_CODE)]
        total += int(count_text)
        charged[ours[-1] if ours else frames[start]] += int(count_text)
    ranked = sorted(((n, f.replace("chalicelib/", "")) for f, n in charged.items()), reverse=True)[:top]
    return total, [(100.0 * n / total, f) for n, f in ranked]
