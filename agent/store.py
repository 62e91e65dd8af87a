"""Atomic persistence of the agent's state in data_dir (THREATS 28).

`atomic_write` writes a temp file in the same directory, fsyncs it, renames it over the target and
fsyncs the directory, so a reader sees either the old or the new file, never a torn one. `Store`
keeps one JSON document (state.json) holding the machine state, the current job, the outcome to report,
installed versions, version floors and recently finished executions. It does not interpret them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

STATE_FILE = "state.json"
MAX_FINISHED = 32


class StoreError(Exception):
    """state.json cannot be read; the message says what to do."""


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def append_line(path: str, line: str) -> None:
    """Append one line and fsync (history.txt)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def last_line(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    return lines[-1].decode(errors="replace") if lines else None


def empty_state(apps: Mapping[str, str]) -> dict[str, Any]:
    return {
        "state": "IDLE",
        "job": None,
        "outcome": None,
        "install": None,
        "apps": dict(apps),
        "floors": dict(apps),
        "seq": 0,
        "finished": {},
    }


class Store:
    """state.json under data_dir: load once, mutate the dict, `save()` atomically."""

    def __init__(self, data_dir: str, initial_apps: Mapping[str, str]) -> None:
        self.path = os.path.join(data_dir, STATE_FILE)
        self.data = self._load(initial_apps)

    def _load(self, initial_apps: Mapping[str, str]) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as f:
                loaded = json.loads(f.read())
        except FileNotFoundError:
            return empty_state(initial_apps)
        except (OSError, ValueError) as err:  # never silently forget version floors (downgrade protection)
            raise StoreError(f"state file {self.path} is unreadable ({err}); move it away to start afresh") from err
        if not isinstance(loaded, dict):
            raise StoreError(f"state file {self.path} does not hold a JSON object")
        base = empty_state(initial_apps)
        base.update(loaded)
        return base

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, sort_keys=True, indent=1).encode())

    def next_seq(self) -> int:
        self.data["seq"] = int(self.data.get("seq", 0)) + 1
        return self.data["seq"]

    def remember_finished(self, execution_id: str, outcome: Mapping[str, Any]) -> None:
        finished = dict(self.data.get("finished") or {})
        finished.pop(execution_id, None)
        finished[execution_id] = dict(outcome)
        while len(finished) > MAX_FINISHED:
            finished.pop(next(iter(finished)))
        self.data["finished"] = finished
