"""The agent updating itself: a trial start and a confirm, as bootloaders do for firmware.

A package of kind `agent` for the configured `[self_update] app` installs like any app (a new version
directory next to the old one, `current` switched), but is not committed: the agent persists a trial
(version, previous version, deadline, starts) in state TRIAL and exits with TRIAL_EXIT so the service
manager (systemd `Restart=always`, see agent/ota-agent.service) starts it again. Every start goes through
`launch` (the `ota-agent` entry point is the launcher): it execs `<install_root>/<app>/current/bin/ota-agent`
when that exists (else this, the factory agent, runs). In TRIAL, `launch` counts the start; a second
start still in TRIAL (the new agent died before confirming) or a start after the deadline restores the
previous version (`current` switched back, state ROLLING_BACK, outcome FAILED with the reason) before
choosing what to exec: the previous agent then finishes the rollback and reports FAILED. The new agent
confirms only after it connected and the broker acknowledged its report (`step_trial`); then the
install is committed (version floor, inventory, history) and SUCCEEDED reported. A new agent that runs
but cannot confirm by the deadline restores the previous one itself and exits the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from otaformat.manifest import parse_timestamp

from .config import Config
from .installer import Installer
from .machine import Event, State
from .store import Store

if TYPE_CHECKING:
    from .runtime import Agent

log = logging.getLogger("ota-agent")
TRIAL_EXIT = 75  # EX_TEMPFAIL: "start me again" to the service manager
CHILD = "OTA_AGENT_CHILD"  # set in the environment of the agent the launcher execs (it does not launch again)
ENTRY = os.path.join("bin", "ota-agent")


def entry_point(install_root: str, app: str) -> str | None:
    path = os.path.join(install_root, app, "current", ENTRY)
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def restore(store: Store, installer: Installer, app: str, reason: str) -> None:
    """Point `current` back at the previous agent and leave ROLLING_BACK with the reason persisted."""
    trial = store.data.get("trial") or {}
    installer.switch(app, trial.get("previous"))
    store.data["outcome"] = {"state": "FAILED", "reason": reason}
    store.data["state"] = State.ROLLING_BACK.value
    store.data["trial"] = None
    store.save()


def launch(config: Config, argv: list[str], now: datetime) -> list[str] | None:
    """What to exec for this start (None: run this agent), after settling a pending trial."""
    app = config.self_update_app
    if app is None or os.environ.get(CHILD):
        return None
    store = Store(config.data_dir, config.installed_apps)
    installer = Installer(os.path.realpath(config.install_root), config.data_dir, config.script_timeout)
    trial = store.data.get("trial")
    if store.data.get("state") == State.TRIAL.value and trial:
        version = trial.get("version")
        if int(trial.get("starts", 0)) >= 1:
            restore(store, installer, app, f"new agent {version} stopped before it confirmed (connected and "
                                           "reported); previous agent restored")
        elif parse_timestamp(trial["deadline"]) <= now:
            restore(store, installer, app, f"new agent {version} did not confirm within "
                                           f"{config.trial_seconds:g} s; previous agent restored")
        else:
            trial["starts"] = int(trial.get("starts", 0)) + 1
            store.save()
    entry = entry_point(installer.install_root, app)
    return None if entry is None else [entry, *argv]


def child_env() -> dict[str, str]:
    return {**os.environ, CHILD: "1", "OTA_PYTHON": sys.executable}


class SelfUpdate:
    def is_self_update(self: Agent, info: dict[str, Any]) -> bool:
        return info.get("kind") == "agent" and info.get("app") == self.cfg.self_update_app and not info.get("noop")

    def start_trial(self: Agent) -> Event:
        """After install: persist the trial and ask to be restarted into the new agent."""
        info = self.store.data["install"]
        deadline = self.wall() + timedelta(seconds=self.cfg.trial_seconds)
        self.store.data["trial"] = {"app": info["app"], "version": info["version"], "previous": info.get("previous"),
                                    "deadline": deadline.strftime("%Y-%m-%dT%H:%M:%SZ"), "starts": 0,
                                    "instance": self.instance}
        self.restart_code = TRIAL_EXIT
        self.stop_event.set()
        return Event.TRIAL_STARTED

    def step_trial(self: Agent) -> Event | None:
        trial = self.store.data.get("trial") or {}
        if not trial or trial.get("instance") == self.instance:
            return None  # the installing agent: waiting to be restarted into the new one
        if parse_timestamp(trial["deadline"]) <= self.wall():
            with contextlib.suppress(Exception):
                restore(self.store, self.installer, trial["app"], f"new agent {trial['version']} could not confirm "
                                                                  f"within {self.cfg.trial_seconds:g} s; previous "
                                                                  "agent restored")
            self.restart_code = TRIAL_EXIT
            self.stop_event.set()
            return None
        if not self.transport.connected:
            return None
        if not self.report("IN_PROGRESS", step="INSTALLING", wait=5.0,
                           reason=f"new agent {trial['version']} connected; confirming"):
            return None
        self.store.data["trial"] = None
        self.store.data["install"]["confirmed"] = True
        log.info("new agent %s confirmed", trial["version"])
        return Event.CONFIRMED


def wall_now() -> datetime:
    return datetime.now(UTC)
