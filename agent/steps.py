"""The synchronous step functions of the agent's state machine, one small function per state.

Each step does the work of its state and returns the event that leaves it (or None to wait, e.g.
REPORTING while offline). `advance()` runs steps until the machine reaches a state that waits for
messages (IDLE, DOWNLOADING). Mixed into agent.runtime.Agent; uses its store, installer and clocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from typing import TYPE_CHECKING, Any

from otaformat import messages
from otaformat.errors import FormatError

from .history import append_once, history_line
from .installer import InstallError
from .machine import Event, State
from .spool import Spool, remove_spool
from .store import atomic_write
from .verify import Refusal, Verified
from .verify_stream import verify_spool

if TYPE_CHECKING:
    from .runtime import Agent

log = logging.getLogger("ota-agent")
REPORT_WAIT = 5.0


class Steps:
    def advance(self: Agent) -> None:
        steps = {
            State.VERIFYING: self.step_verifying,
            State.INSTALLING: self.step_installing,
            State.COMMITTING: self.step_committing,
            State.ROLLING_BACK: self.step_rolling_back,
            State.REPORTING: self.step_reporting,
            State.COMMANDING: self.step_commanding,
            State.TRIAL: self.step_trial,
        }
        while self.state in steps:
            event = steps[self.state]()
            if event is None:
                return
            self.fire(event)

    # -- VERIFYING --------------------------------------------------------------------------------

    def step_verifying(self: Agent) -> Event | None:
        assert self.job is not None
        job = self.job
        try:
            spool = self.spool or Spool(self.spool_dir, package_size=job.package_size, block_size=job.block_size,
                                        block_count=job.block_count, stream=job.stream)
            path = spool.path
        except Exception as err:
            self.store.data["outcome"] = {"state": "FAILED", "reason": f"cannot read the downloaded package: {err}"}
            return Event.REJECTED
        finally:
            self.close_download()
        try:
            self.verified = verify_spool(job, path, self.policy, now=self.wall(), base_content=self.base_content,
                                         workdir=self.spool_dir)
        except Refusal as refusal:
            self.store.data["outcome"] = {"state": refusal.state, "reason": refusal.reason}
            return Event.REJECTED
        except Exception as err:  # fail closed: an unforeseen error never installs and never loops
            log.exception("verification crashed")
            self.store.data["outcome"] = {"state": "FAILED", "reason": f"verification error: {type(err).__name__}"}
            return Event.REJECTED
        self.crash("verified")
        if self.cancel_pending():
            self.store.data["outcome"] = {"state": "FAILED", "reason": "canceled by the cloud before install"}
            return Event.CANCELED
        m = self.verified.manifest
        try:
            previous = self.installer.current_target(m.app)
        except (InstallError, OSError, FormatError) as err:
            self.store.data["outcome"] = {"state": "FAILED", "reason": f"install target unusable: {err}"}
            return Event.REJECTED
        self.store.data["install"] = {"app": m.app, "version": m.version, "kind": m.kind,
                                      "previous": previous, "started": True}
        return Event.VERIFIED

    def cancel_pending(self: Agent) -> bool:
        """Look at messages that arrived while verifying: a cancel for this execution wins over install."""
        canceled = False
        while True:
            try:
                item = self.inbox.get_nowait()
            except Exception:
                break
            payload = getattr(item, "payload", b"")
            if getattr(item, "leaf", "") == "job" and len(payload) < 4096:
                with contextlib.suppress(Exception):
                    msg = messages.decode(payload)
                    if isinstance(msg, messages.Cancel) and self.job and msg.execution_id == self.job.execution_id:
                        canceled = True
                        continue
            self.backlog.append(item)
        return canceled

    # -- INSTALLING -------------------------------------------------------------------------------

    def step_installing(self: Agent) -> Event | None:
        verified, info = self.verified, self.store.data["install"]
        if verified is None or info is None:  # cannot happen: INSTALLING is only entered from VERIFYING
            self.store.data["outcome"] = {"state": "FAILED", "reason": "install state lost"}
            return Event.INSTALL_FAILED
        m = verified.manifest
        if self.store.data["apps"].get(m.app) == m.version and info["previous"] == m.version:
            self.store.data["outcome"] = {"state": "SUCCEEDED", "reason": f"{m.app} {m.version} already installed"}
            info["noop"] = True
            return Event.INSTALLED
        env = self.script_env(m.app, m.version, m.kind, info["previous"])
        try:
            self.installer.stage_scripts(verified)
            self.installer.write_version(verified)
            self.keep_base(verified)
            self.crash("mid-install")
            for role in ("pre-install", "install"):
                self.installer.run_script(m.app, m.version, role, env)
            self.installer.switch(m.app, m.version)
            self.installer.run_script(m.app, m.version, "post-install", env)
        except (InstallError, OSError, FormatError) as err:
            self.store.data["outcome"] = {"state": "FAILED", "reason": f"install failed: {err}"}
            return Event.INSTALL_FAILED
        self.store.data["outcome"] = {"state": "SUCCEEDED", "reason": None}
        return Event.INSTALLED

    def script_env(self: Agent, app: str, version: str, kind: str, previous: str | None) -> dict[str, str]:
        """Environment of every script (docs/agent.md)."""
        root = self.installer.install_root
        version_dir = os.path.join(root, app, version)
        return {"OTA_APP": app, "OTA_VERSION": version, "OTA_KIND": kind, "OTA_INSTALL_ROOT": root,
                "OTA_ROOT": os.path.join(root, app), "OTA_VERSION_DIR": version_dir, "OTA_CONTENT": version_dir,
                "OTA_PREVIOUS_VERSION": previous or ""}

    def keep_base(self: Agent, verified: Verified) -> None:
        """Keep the verified content as the base for future deltas of this app."""
        m = verified.manifest
        directory = os.path.join(self.cfg.data_dir, "base", m.app)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        atomic_write(os.path.join(directory, f"{m.version}.bin"), verified.content)

    def kept_base_sha256(self: Agent, app: str, version: str) -> str | None:
        """SHA-256 of the kept base content of app version (None if not kept): for the pre-download check."""
        try:
            with open(os.path.join(self.cfg.data_dir, "base", app, f"{version}.bin"), "rb") as f:
                return hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            return None

    def base_content(self: Agent, app: str, version: str) -> bytes | None:
        try:
            with open(os.path.join(self.cfg.data_dir, "base", app, f"{version}.bin"), "rb") as f:
                return f.read()
        except OSError:
            return None

    # -- COMMITTING -------------------------------------------------------------------------------

    def step_committing(self: Agent) -> Event | None:
        if self.is_self_update(self.store.data["install"] or {}) and not self.store.data["install"].get("confirmed"):
            return self.start_trial()  # a new agent commits only after it confirmed itself
        self.crash("before-commit")
        try:
            return self.commit()
        except OSError as err:
            self.store.data["outcome"] = {"state": "FAILED", "reason": f"commit failed: {err}"}
            return Event.INSTALL_FAILED

    def commit(self: Agent) -> Event:
        info: dict[str, Any] = self.store.data["install"]
        app, version = info["app"], info["version"]
        stamp = info.get("committed_at") or self.wall().strftime("%Y-%m-%dT%H:%M:%SZ")
        if not info.get("committed_at"):
            info["committed_at"] = stamp
            self.store.save()
        if not info.get("noop"):
            append_once(self.history_path, history_line(stamp, app, version, "SUCCEEDED"))
        self.store.data["apps"][app] = version
        floor = self.store.data["floors"].get(app)
        if floor is None or _key(version) > _key(floor):
            self.store.data["floors"][app] = version
        self.store.data["outcome"] = self.store.data.get("outcome") or {"state": "SUCCEEDED", "reason": None}
        self.store.data["state"] = State.REPORTING.value  # floor, inventory and next state in one atomic write
        self.store.save()
        self.crash("after-commit")
        self.prune_base(app, version)
        self.installer.clear_run(app)
        return Event.COMMITTED

    def prune_base(self: Agent, app: str, keep: str) -> None:
        directory = os.path.join(self.cfg.data_dir, "base", app)
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            if name != f"{keep}.bin":
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))

    # -- ROLLING_BACK -----------------------------------------------------------------------------

    def step_rolling_back(self: Agent) -> Event | None:
        info = self.store.data.get("install")
        if info:
            info["rolled_back"] = True  # for history.txt (persisted with the next transition)
            app, version, previous = info["app"], info["version"], info.get("previous")
            env = self.script_env(app, version, info.get("kind", ""), previous)
            try:
                self.installer.run_script(app, version, "rollback", env)
            except (InstallError, OSError, FormatError) as err:
                log.warning("rollback script failed: %s", err)
                outcome = self.store.data.get("outcome") or {"state": "FAILED", "reason": "install failed"}
                outcome["reason"] = f"{outcome.get('reason')}; rollback script failed too: {err}"
                self.store.data["outcome"] = outcome
            try:
                if self.installer.current_target(app) != previous:
                    self.installer.switch(app, previous)
                if version != previous:
                    self.installer.remove_version(app, version)
                if self.store.data["apps"].get(app) != version:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.cfg.data_dir, "base", app, f"{version}.bin"))
                self.installer.clear_run(app)
            except (OSError, InstallError, FormatError) as err:  # report it; never loop on a stuck rollback
                log.error("rollback incomplete: %s", err)
                outcome = self.store.data.get("outcome") or {"state": "FAILED", "reason": "install failed"}
                outcome["reason"] = f"{outcome.get('reason')}; rollback incomplete: {err}"
                self.store.data["outcome"] = outcome
        if not self.store.data.get("outcome"):
            self.store.data["outcome"] = {"state": "FAILED", "reason": "install failed; previous version restored"}
        return Event.ROLLED_BACK

    # -- REPORTING --------------------------------------------------------------------------------

    def step_reporting(self: Agent) -> Event | None:
        outcome = self.store.data.get("outcome") or {"state": "FAILED", "reason": "outcome lost"}
        if not self.transport.connected:
            return None  # stay in REPORTING (persisted) until the broker is back
        xid = self.job.execution_id if self.job else "-"
        self.close_download()
        remove_spool(self.spool_dir)  # temp data goes before the outcome is told (THREATS 3)
        self.record_attempt(outcome)  # history.txt: a line for a failed or rolled-back attempt too
        if not self.report(outcome["state"], reason=outcome.get("reason"), wait=REPORT_WAIT):
            return None
        self.store.remember_finished(xid, outcome)
        self.store.data.update(job=None, outcome=None, install=None)
        self.job, self.verified = None, None
        self.publish_inventory()  # the cloud republishes pending job documents on inventory
        return Event.REPORTED


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))
