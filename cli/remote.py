"""`ota commands send|list|show|watch` and the `ota devices reboot|restart-agent EPN` shortcuts.

The command is signed here, on the operator's machine, with the publisher key given by --key (the API
and the cloud never see a private key); the API checks the signature against the registered keys and
sends it to every target device. Exit status of send --wait and watch: 0 only if every run SUCCEEDED.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cli import render
from cli.client import ApiClient, CliError, UsageError
from cli.commands import Output, seg
from otaformat import commands as oc
from otaformat.errors import FormatError
from otaformat.signing import load_private_key

COMMAND_COLUMNS = [("COMMAND_ID", "command_id"), ("CREATED", "created_at"), ("TYPE", "type"),
                   ("TARGETS", "targets"), ("DEVICES", "devices"), ("FINISHED", "finished"), ("COUNTS", "counts")]
RUN_COLUMNS = [("EPN", "epn"), ("STATE", "state"), ("EXIT", "exit_code"), ("REASON", "reason")]
TERMINAL = ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT")


def build_envelope(key_file: Path, kind: str, devices: list[str] | None, model: str | None, *,
                   script: Path | None = None, app: str | None = None, max_bytes: int | None = None,
                   timeout: int = 60, expires_in: int = 3600, now: datetime | None = None) -> dict[str, Any]:
    """The signed envelope of a new command (a fresh single-use id); UsageError for what a device refuses."""
    if bool(devices) == bool(model):
        raise UsageError("give either --device EPN (one or more) or --model M")
    try:
        key = load_private_key(key_file.read_bytes())
    except OSError as err:
        raise UsageError(f"cannot read the signing key {key_file}: {err.strerror}") from err
    except FormatError as err:
        raise UsageError(f"{key_file}: {err.reason}") from err
    text = None
    if kind == "run-script":
        if script is None:
            raise UsageError("run-script needs --script FILE")
        try:
            text = script.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read the script {script}: {err}") from err
    elif script is not None:
        raise UsageError("--script is only for run-script")
    args = {"app": app} if app else {}
    if max_bytes is not None:
        args["max_bytes"] = str(max_bytes)
    start = (now or datetime.now(UTC)).replace(microsecond=0)
    command = oc.Command(command_id="cmd-" + secrets.token_hex(10), type=kind, issued=oc.iso(start),
                         expires=oc.iso(start + timedelta(seconds=expires_in)), devices=tuple(devices or ()),
                         model=model, args=tuple(sorted(args.items())), script=text, timeout=timeout)
    try:
        return oc.sign_command(command, key)
    except FormatError as err:
        raise UsageError(f"the command would be refused: {err.reason}") from err


def send(api: ApiClient, out: Output, envelope: Mapping[str, Any], wait: bool, timeout: float | None) -> int:
    made = api.post("/commands", {"envelope": dict(envelope)})
    cid = str(made.get("command_id"))
    if not wait:
        out.emit(made, lambda: f"command {cid} ({made.get('type')}) sent to {made.get('devices')} device(s)")
        return 0
    if not out.json:
        out.stream.write(f"command {cid} ({made.get('type')}) sent to {made.get('devices')} device(s)\n")
    return watch(api, out, cid, 0.5, timeout)


def list_(api: ApiClient, out: Output, limit: int | None = None) -> int:
    answer = api.get_all("/commands", "commands", None, limit)
    rows = sorted(answer.get("commands", []), key=lambda m: str(m.get("created_at") or ""), reverse=True)
    out.emit(answer, lambda: render.table(rows, COMMAND_COLUMNS))
    return 0


def runs_of(api: ApiClient, command_id: str) -> list[Any]:
    """Every run of the command (GET /commands/{id}/runs, page after page)."""
    return list(api.get_all(f"/commands/{seg(command_id)}/runs", "runs")["runs"])


def show(api: ApiClient, out: Output, command_id: str) -> int:
    command = {**api.get(f"/commands/{seg(command_id)}"), "runs": runs_of(api, command_id)}
    out.emit(command, lambda: describe(command))
    return 0


def describe(command: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in command.items() if k not in ("runs", "envelope")}  # both below / with --json
    head = render.block(shown, ["command_id", "type", "targets", "args", "created_at", "expires_at", "counts"])
    parts = [head, "", render.table(command.get("runs", []), RUN_COLUMNS, empty="(no runs)")]
    for run in command.get("runs", []):
        if run.get("output"):
            cut = " (truncated)" if run.get("truncated") else ""
            parts += ["", f"--- {run['epn']} output{cut} ---", str(run["output"]).rstrip("\n")]
    return "\n".join(parts)


def watch(api: ApiClient, out: Output, command_id: str, interval: float, timeout: float | None) -> int:
    """Print each run's changes until every run is terminal; 0 only if all SUCCEEDED. Polls the command's
    counts, and reads its runs (every page) only when they changed."""
    deadline = None if timeout is None else out.clock() + timeout
    seen: dict[str, str] = {}
    counts: Any = None
    runs: list[Any] = []
    while True:
        command = api.get(f"/commands/{seg(command_id)}")
        if command.get("counts") != counts or counts is None:
            counts = command.get("counts")
            runs = runs_of(api, command_id)
            for run in runs:
                if seen.get(run["epn"]) != run["state"]:
                    seen[run["epn"]] = run["state"]
                    if out.json:
                        out.stream.write(json.dumps({"command_id": command_id, "run": run}, sort_keys=True) + "\n")
                    else:
                        why = f" ({run['reason']})" if run.get("reason") else ""
                        code = f" exit {run['exit_code']}" if run.get("exit_code") is not None else ""
                        out.stream.write(f"{run['epn']:<20} {run['state']}{code}{why}\n")
            out.stream.flush()
        if runs and all(r["state"] in TERMINAL for r in runs):
            break
        if deadline is not None and out.clock() > deadline:
            raise CliError(f"command {command_id} not finished after {timeout:.0f}s")
        out.sleep(interval)
    if not out.json:
        out.stream.write(describe({**command, "runs": runs}) + "\n")
        out.stream.flush()
    return 0 if all(r["state"] == "SUCCEEDED" for r in runs) else 1
