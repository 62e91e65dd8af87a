"""Atomic persistence of the agent's state in data_dir (THREATS 28).

`atomic_write` writes a temp file in the same directory, fsyncs it, renames it over the target and
fsyncs the directory, so a reader sees either the old or the new file, never a torn one. Temp files are
named `.tmp-` + 8 characters of [a-z0-9_] (TEMP_NAME); a SIGKILL between create and rename leaves one
behind, and `remove_stray_temps` deletes exactly those, in the directories the agent writes them to, at
start. `Store`
keeps one JSON document (state.json) holding the machine state, the current job, the outcome to report,
installed versions, version floors and recently finished executions. It does not interpret them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from typing import Any

STATE_FILE = "state.json"
MAX_FINISHED = 32
TEMP_PREFIX = ".tmp-"
# Our temp names: ".tmp-" + 8 hex digits (this agent) or + 8 of [a-z0-9_] (tempfile.mkstemp, older agents).
TEMP_NAME = re.compile(r"\.tmp-[a-z0-9_]{8}")
# Directories under data_dir where atomic_write puts temp files ("*" = every subdirectory, one level).
TEMP_DIRS = ("", "tls", os.path.join("spool", "current"), os.path.join("base", "*"))


class StoreError(Exception):
    """state.json cannot be read; the message says what to do."""


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_temp(directory: str) -> tuple[int, str]:
    """Create a fresh temp file (O_EXCL, 0600, no links followed) named to match TEMP_NAME."""
    while True:
        tmp = os.path.join(directory, TEMP_PREFIX + secrets.token_hex(4))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), tmp
        except FileExistsError:
            continue


def remove_stray_temps(data_dir: str) -> list[str]:
    """Delete temp files left by a kill during atomic_write: regular files named TEMP_NAME, in TEMP_DIRS only."""
    removed: list[str] = []
    for directory in _temp_dirs(data_dir):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if not TEMP_NAME.fullmatch(name):
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(path).st_mode):
                    os.unlink(path)
                    removed.append(path)
    return removed


def _temp_dirs(data_dir: str) -> list[str]:
    """data_dir itself, then the TEMP_DIRS below it that are real directories (links are not followed)."""
    out = [data_dir]
    for rel in TEMP_DIRS[1:]:
        parent, leaf = os.path.split(rel)
        if leaf != "*":
            out.append(os.path.join(data_dir, rel))
            continue
        base = os.path.join(data_dir, parent)
        with contextlib.suppress(OSError):
            if _real_dir(base):
                out.extend(os.path.join(base, n) for n in sorted(os.listdir(base))
                           if _real_dir(os.path.join(base, n)))
    return [out[0]] + [d for d in out[1:] if _real_dir(d)]


def _real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = new_temp(directory)
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
        "command": None,  # the remote command being run (agent.commanding)
        "commands_seen": {},  # command id -> its expiry: ids already run (replays are refused)
        "trial": None,  # a new agent on trial (agent.selfupdate)
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
