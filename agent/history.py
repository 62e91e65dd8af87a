"""data_dir/history.txt: plain text, one line per install attempt, oldest first (docs/agent.md).

    <UTC timestamp> <app> <version> <result>[ <reason>]

result: SUCCEEDED (committed), ROLLED_BACK (installing started and the previous version was restored),
FAILED or REJECTED (refused or failed before anything was installed); the reason is the first line of
what was reported, at most 200 characters. A line is appended with fsync, and not again when it is
already the last line (a restart while reporting writes it once). Mixed into agent.runtime.Agent.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from otaformat.errors import FormatError
from otaformat.manifest import Manifest

from .store import append_line, last_line

if TYPE_CHECKING:
    from .runtime import Agent

MAX_REASON = 200


def history_line(stamp: str, app: str, version: str, result: str, reason: str | None = None) -> str:
    text = " ".join((reason or "").split())[:MAX_REASON]
    return f"{stamp} {app} {version} {result}" + (f" {text}" if text else "")


def append_once(path: str, line: str) -> None:
    if last_line(path) != line:
        append_line(path, line)


class History:
    @property
    def history_path(self: Agent) -> str:
        return os.path.join(self.cfg.data_dir, "history.txt")

    def record_attempt(self: Agent, outcome: dict[str, Any]) -> None:
        """The line of a job that did not succeed (a success is written when it is committed)."""
        if outcome.get("state") == "SUCCEEDED":
            return
        info = self.store.data.get("install") or {}
        app, version = info.get("app"), info.get("version")
        if app is None and self.job is not None:
            with contextlib.suppress(FormatError, KeyError, TypeError, ValueError):
                manifest = Manifest.from_dict(self.job.envelope["manifest"])
                app, version = manifest.app, manifest.version
        if app is None or version is None:
            return  # nothing readable says what was attempted
        if not outcome.get("at"):
            outcome["at"] = self.wall().strftime("%Y-%m-%dT%H:%M:%SZ")
            self.store.save()
        result = "ROLLED_BACK" if info.get("rolled_back") else str(outcome.get("state"))
        append_once(self.history_path, history_line(outcome["at"], app, version, result, outcome.get("reason")))
