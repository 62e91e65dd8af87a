"""Installing verified content into versioned directories, running scripts, switching `current`.

Layout: `<install_root>/<app>/<version>/` holds the files (firmware: `image.bin`), and
`<install_root>/<app>/current` is a relative symbolic link to the active version, switched atomically
(temp link + os.replace + directory fsync). Files are written with otaformat.extract (no link is
ever followed). Scripts are staged from the verified in-memory copy into a private directory under
data_dir and run from there with a timeout in their own process group; their output goes to
data_dir/logs. This module takes no decisions about *whether* to install: see agent.verify.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass

from otaformat.extract import checked_root, write_file, write_files

from .store import fsync_dir
from .verify import Verified

CURRENT = "current"


class InstallError(Exception):
    """Installing failed; the message is the reason reported to the cloud."""


@dataclass(frozen=True)
class Installer:
    install_root: str
    data_dir: str
    script_timeout: float

    def app_dir(self, app: str) -> str:
        path = os.path.join(checked_root(self.install_root), app)
        os.makedirs(path, mode=0o755, exist_ok=True)
        if os.path.islink(path):
            raise InstallError(f"{path} is a symbolic link")
        return path

    def current_target(self, app: str) -> str | None:
        link = os.path.join(self.app_dir(app), CURRENT)
        return os.readlink(link) if os.path.islink(link) else None

    def run_dir(self, app: str) -> str:
        return os.path.join(self.data_dir, "run", app)

    def write_version(self, verified: Verified) -> str:
        """Write the version directory from the verified content; an old partial copy is removed first."""
        m = verified.manifest
        app_dir = self.app_dir(m.app)
        final = os.path.join(app_dir, m.version)
        partial = os.path.join(app_dir, f".partial-{m.version}")
        for leftover in (partial, final):
            if os.path.lexists(leftover) and self.current_target(m.app) != os.path.basename(leftover):
                _remove(leftover)
        os.mkdir(partial, 0o755)
        try:
            if m.kind == "firmware":
                data = b"".join(bytes(d) for p, _, d in verified.files() if not p.startswith("scripts/"))
                write_file(partial, "image.bin", data, 0o644)
                write_files(partial, [(p, mode, d) for p, mode, d in verified.files() if p.startswith("scripts/")])
            else:
                write_files(partial, verified.files())
        except Exception as err:
            raise InstallError(f"writing {m.app} {m.version} failed: {err}") from err
        os.rename(partial, final)
        fsync_dir(app_dir)
        return final

    def stage_scripts(self, verified: Verified) -> dict[str, str]:
        """Copy the manifest's scripts from the verified content into a private run directory."""
        m = verified.manifest
        run = self.run_dir(m.app)
        _remove(run)
        os.makedirs(run, mode=0o700)
        files = {p: d for p, _, d in verified.files()}
        staged = {}
        for role, path in m.scripts:
            staged[role] = write_file(run, role, files[path], 0o700)
        return staged

    def run_script(self, app: str, version: str, role: str, env: dict[str, str]) -> None:
        script = os.path.join(self.run_dir(app), role)
        if not os.path.isfile(script):
            return
        logs = os.path.join(self.data_dir, "logs")
        os.makedirs(logs, mode=0o700, exist_ok=True)
        log_path = os.path.join(logs, f"{app}-{version}-{role}.log")
        cwd = os.path.join(self.app_dir(app), version)
        if not os.path.isdir(cwd):
            cwd = self.app_dir(app)
        full_env = {**os.environ, **env, "OTA_ROLE": role}
        with open(log_path, "ab") as log:
            try:
                proc = subprocess.Popen([script], cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as err:
                raise InstallError(f"{role} script cannot be started: {err.strerror}") from err
            try:
                code = proc.wait(timeout=self.script_timeout)
            except subprocess.TimeoutExpired as err:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise InstallError(f"{role} script timed out after {self.script_timeout:g} s and was killed "
                                   f"(log: {log_path})") from err
        if code != 0:
            raise InstallError(f"{role} script exited with status {code} (log: {log_path})")

    def switch(self, app: str, target: str | None) -> None:
        """Point `current` at `target` (a version directory name) atomically; None removes it."""
        app_dir = self.app_dir(app)
        link = os.path.join(app_dir, CURRENT)
        if target is None:
            if os.path.islink(link):
                os.unlink(link)
        else:
            tmp = os.path.join(app_dir, f".current-{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, link)
        fsync_dir(app_dir)

    def remove_version(self, app: str, version: str) -> None:
        app_dir = self.app_dir(app)
        if self.current_target(app) == version:
            return
        for name in (version, f".partial-{version}"):
            _remove(os.path.join(app_dir, name))

    def clear_run(self, app: str) -> None:
        _remove(self.run_dir(app))


def _remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
