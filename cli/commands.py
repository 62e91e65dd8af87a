"""What each `ota` subcommand does: API calls through ApiClient, output through Output. No argparse here.

Every command returns its exit status: 0 done, 1 the API refused or the outcome is a failure (a
REJECTED package, a job that did not fully succeed). `--json` prints the API's answers as JSON.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from urllib.parse import quote

from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper

from cli import render
from cli.client import ApiClient, CliError, UsageError
from cli.precheck import check_package_file

DEVICE_COLUMNS = [("EPN", "epn"), ("MODEL", "model"), ("STATE", "state"), ("AGENT", "agent_version"),
                  ("APPS", "apps")]
KEY_COLUMNS = [("KEY_ID", "key_id"), ("NAME", "name"), ("CREATED", "created_at")]
PACKAGE_COLUMNS = [("UPLOAD_ID", "upload_id"), ("STATE", "state"), ("APP", "manifest.app"),
                   ("VERSION", "manifest.version"), ("KIND", "manifest.kind"), ("MODELS", "manifest.models"),
                   ("SIZE", "size"), ("SOURCE", "source"), ("UPLOADED_BY", "uploaded_by")]
JOB_COLUMNS = [("JOB_ID", "job_id"), ("CREATED", "created_at"), ("APP", "app"), ("VERSION", "version"),
               ("STATE", "state"), ("MODE", "mode"), ("PERCENT", "percent"), ("DEVICES", "targets"),
               ("COUNTS", "counts")]
EXECUTION_COLUMNS = [("EPN", "epn"), ("JOB_ID", "job_id"), ("STATE", "state"), ("STEP", "step"),
                     ("PERCENT", "percent")]


@dataclass
class Output:
    """Where results go, and how: JSON for scripts, text for people, live redraws on a terminal."""

    json: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def emit(self, value: Any, text: str | Callable[[], str]) -> None:
        if self.json:
            self.stream.write(render.as_json(value) + "\n")
        else:
            self.stream.write((text() if callable(text) else text) + "\n")
        self.stream.flush()


def seg(value: str) -> str:
    """One path segment, escaped so an id can never change the route."""
    return quote(value, safe="")


# devices -------------------------------------------------------------------------------------------

def devices_add(api: ApiClient, out: Output, epn: str, model: str) -> int:
    made = api.post("/devices", {"epn": epn, "model": model})
    out.emit(made, lambda: f"device {made.get('epn', epn)} ({made.get('model', model)}) created\n"
                           f"registration token (shown once): {made.get('registration_token')}\n"
                           f"expires: {made.get('token_expires', '-')}")
    return 0


def devices_list(api: ApiClient, out: Output, model: str | None, limit: int | None = None) -> int:
    answer = api.get_all("/devices", "devices", {"model": model} if model else None, limit)
    out.emit(answer, lambda: render.table(answer.get("devices", []), DEVICE_COLUMNS))
    return 0


def devices_show(api: ApiClient, out: Output, epn: str) -> int:
    device = api.get(f"/devices/{seg(epn)}")
    if out.json:
        out.emit(device, "")
        return 0
    executions = api.get_all(f"/devices/{seg(epn)}/executions", "executions")["executions"]
    out.emit(device, lambda: render.block(device, ["epn", "model", "state", "agent_version", "apps"]) + "\n\n"
             + render.table(executions, EXECUTION_COLUMNS, empty="(no executions)"))
    return 0


def devices_rm(api: ApiClient, out: Output, epn: str) -> int:
    answer = api.delete(f"/devices/{seg(epn)}")
    out.emit(answer, f"device {epn} {answer.get('state', 'DEREGISTERED')}; its certificate is revoked")
    return 0


# keys ----------------------------------------------------------------------------------------------

def keys_add(api: ApiClient, out: Output, pem_file: Path, name: str) -> int:
    try:
        pem = pem_file.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read public key {pem_file}: {err}") from err
    made = api.post("/keys", {"public_key": pem, "name": name})
    out.emit(made, f"key {made.get('key_id')} ({made.get('name', name)}) registered")
    return 0


def keys_list(api: ApiClient, out: Output) -> int:
    answer = api.get("/keys")
    out.emit(answer, lambda: render.table(answer.get("keys", []), KEY_COLUMNS))
    return 0


def keys_rm(api: ApiClient, out: Output, key_id: str) -> int:
    answer = api.delete(f"/keys/{seg(key_id)}")
    out.emit(answer, f"key {key_id} removed")
    return 0


# packages ------------------------------------------------------------------------------------------

def package_verdict(package: Mapping[str, Any]) -> str:
    state = package.get("state")
    name = f"{render.pick(package, 'manifest.app', '?')} {render.pick(package, 'manifest.version', '?')}"
    if state == "AVAILABLE":
        return f"AVAILABLE: {name} as {package.get('upload_id')} (sha256 {package.get('sha256', '-')})"
    reasons = package.get("reasons") or ["no reason given"]
    return f"{state}: {package.get('upload_id')}\n" + "\n".join(f"  - {r}" for r in reasons)


def _sha256(handle: BinaryIO) -> str:
    """SHA-256 of an open file, read in 1 MiB chunks; leaves it at the start again."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()


def packages_upload(api: ApiClient, out: Output, path: Path, timeout: float, interval: float = 0.5,
                    check: bool = True) -> int:
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as err:
        raise UsageError(f"cannot read package {path}: {err.strerror or err}") from err
    with handle:
        if check:
            keys = [k.get("public_key", "") for k in api.get("/keys").get("keys", [])]
            check_package_file(path, keys)
        upload = api.post("/packages", {"size": size, "sha256": _sha256(handle)})
        if isinstance(upload.get("existing"), dict):  # these bytes are in the repository already: nothing to send
            out.emit(upload["existing"], lambda: "already in the repository: " + package_verdict(upload["existing"]))
            return 0 if upload["existing"].get("state") == "AVAILABLE" else 1
        url = upload.get("url")
        if not isinstance(url, str) or not upload.get("upload_id"):
            raise CliError("the API gave no upload URL")
        with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc="upload",
                  disable=out.json or not out.tty, file=out.stream) as bar:
            api.put_file(url, CallbackIOWrapper(bar.update, handle, "read"), size)
    upload_id = str(upload["upload_id"])
    if not out.json:
        out.stream.write(f"uploaded {size} bytes as {upload_id}; scanning...\n")
        out.stream.flush()
    deadline = out.clock() + timeout
    while True:
        package = api.get(f"/packages/{seg(upload_id)}")
        if package.get("state") not in (None, "PENDING"):
            break
        if out.clock() > deadline:
            raise CliError(f"package {upload_id} still PENDING after {timeout:.0f}s; check with "
                           f"'ota packages show {upload_id}'")
        out.sleep(interval)
    out.emit(package, lambda: package_verdict(package))
    return 0 if package.get("state") == "AVAILABLE" else 1


def packages_list(api: ApiClient, out: Output, filters: Mapping[str, str | None], limit: int | None = None) -> int:
    answer = api.get_all("/packages", "packages", {k: v for k, v in filters.items() if v}, limit)
    out.emit(answer, lambda: render.table(answer.get("packages", []), PACKAGE_COLUMNS))
    return 0


def packages_show(api: ApiClient, out: Output, upload_id: str) -> int:
    package = api.get(f"/packages/{seg(upload_id)}")
    out.emit(package, lambda: render.block(package, ["upload_id", "state", "reasons", "package_id", "size",
                                                     "sha256", "manifest", "scanner", "source", "uploaded_by",
                                                     "staging_key"]))
    return 0


def packages_retire(api: ApiClient, out: Output, upload_id: str) -> int:
    answer = api.post(f"/packages/{seg(upload_id)}/retire")
    out.emit(answer, f"package {upload_id} retired")
    return 0


# jobs ----------------------------------------------------------------------------------------------

def job_body(package: str, devices: list[str] | None, model: str | None, mode: str | None,
             block_size: int | None, window: int | None, stall: int | None, total: int | None,
             all_or_nothing: bool = False, continuous: bool = False, fallback: str | None = None,
             waves: dict[str, int] | None = None) -> dict[str, Any]:
    if bool(devices) == bool(model):
        raise UsageError("give either --device EPN (one or more) or --model M")
    body: dict[str, Any] = {"package_id": package, "targets": {"devices": devices} if devices else {"model": model}}
    if fallback:
        body["fallback_package_id"] = fallback  # a delta job's full package for devices off its base
    for key, value in (("mode", mode), ("block_size", block_size), ("window", window)):
        if value is not None:
            body[key] = value
    timeouts = {k: v for k, v in (("stall_seconds", stall), ("total_seconds", total)) if v is not None}
    if timeouts:
        body["timeouts"] = timeouts
    if all_or_nothing:
        body["all_or_nothing"] = True
    if continuous:
        if not model:
            raise UsageError("--continuous needs --model")
        body["targets"]["continuous"] = True
    if waves:
        body["waves"] = waves
    return body


def wave_spec(size: int | None, percent: int | None, pause: int | None, interval: int | None) -> dict[str, int] | None:
    """The body's `waves` from --wave-size|--wave-percent [--wave-pause|--wave-interval]; None without."""
    if size is None and percent is None:
        if pause is not None or interval is not None:
            raise UsageError("--wave-pause and --wave-interval go with --wave-size or --wave-percent")
        return None
    spec = {"size": size} if size is not None else {"percent": percent}
    if interval is not None:
        spec["interval_seconds"] = interval
    elif pause is not None:
        spec["pause_seconds"] = pause
    return {k: v for k, v in spec.items() if v is not None}


def jobs_create(api: ApiClient, out: Output, body: Mapping[str, Any], idempotency_key: str | None) -> int:
    job = api.post("/jobs", dict(body), headers={"Idempotency-Key": idempotency_key} if idempotency_key else None)
    out.emit(job, lambda: f"job {job.get('job_id')} {job.get('state', '')}; follow it with "
                          f"'ota jobs watch {job.get('job_id')}'")
    return 0


def jobs_list(api: ApiClient, out: Output, limit: int | None = None) -> int:
    answer = api.get_all("/jobs", "jobs", None, limit)
    rows = sorted(answer.get("jobs", []), key=lambda j: str(j.get("created_at") or ""), reverse=True)
    shown = [{**j, "targets": j.get("targets_resolved", len(j.get("targets") or [])),
              "counts": {k: v for k, v in (j.get("counts") or {}).items() if v}} for j in rows]
    out.emit(answer, lambda: render.table(shown, JOB_COLUMNS))
    return 0


SKIPPED_SHOWN = 100  # `ota jobs show`: at most this many SKIPPED targets listed with their reason


def jobs_show(api: ApiClient, out: Output, job_id: str, device: str | None) -> int:
    if device:
        execution = api.get(f"/jobs/{seg(job_id)}/executions/{seg(device)}")
        timeline = execution.get("timeline") or []
        out.emit(execution, lambda: render.block({k: v for k, v in execution.items() if k != "timeline"},
                                                 ["epn", "execution_id", "state", "step", "package_id",
                                                  "fallback", "percent"]) + "\n"
                 + render.table(timeline, [("AT", "at"), ("STATE", "state"), ("STEP", "step"),
                                           ("REASON", "reason")], empty="(no timeline)"))
        return 0
    job = api.get(f"/jobs/{seg(job_id)}")
    fields = ["job_id", "state", "package_id", "fallback_package_id", "fallback_executions", "mode", "target_spec",
              "targets_resolved", "executions_created", "percent", "counts", "waves"]
    skipped: list[Any] = []
    if not out.json and (job.get("counts") or {}).get("SKIPPED"):
        listed = api.get_all(f"/jobs/{seg(job_id)}/executions", "executions", limit=SKIPPED_SHOWN * 10)
        skipped = [e for e in listed["executions"] if e.get("state") == "SKIPPED"][:SKIPPED_SHOWN]
    out.emit(job, lambda: render.block(job, [f for f in fields if f in job]) + (
        "\n\nskipped:\n" + render.table(skipped, [("DEVICE", "epn"), ("REASON", "reason")]) if skipped else ""))
    return 0


def jobs_cancel(api: ApiClient, out: Output, job_id: str) -> int:
    job = api.post(f"/jobs/{seg(job_id)}/cancel")
    out.emit(job, f"job {job_id} {job.get('state', 'CANCELED')}")
    return 0
