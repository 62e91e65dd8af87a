"""mosquitto as the local IoT Core: a TLS listener with client certificates and a per-device ACL.

The config asks for a client certificate from the local CA, takes the certificate's CN as the MQTT
username (`use_identity_as_username`) and as the client id (`use_username_as_clientid`, so nobody can
kick another client off by reusing its client id), checks the CRL, and limits each device to
`ota/{its CN}/...` with the exact read/write split of wire protocol v1. Cloud identities (CNs that are
not valid EPN IDs, e.g. `ota.cloud`) may read and write `ota/#`. Group delivery (docs/protocol.md 15):
each registered device also gets its own entry `user {epn}` / `topic read ota/g/{its model}/+/blk`,
from the roles file (`device-models.json`, {epn: model}) the local-ca registry keeps next to the CRL
(chalicelib.adapters.certificates.LocalModelRoles); no pattern line grants a group topic. `refresh_acl`
rewrites the ACL from it and SIGHUPs the broker, which reloads its ACL file (the bridge does so when
the roles file changes). It writes files and starts/stops
mosquitto; it does not make certificates (see local.ca).

mosquitto writes its PID to `mosquitto.pid` next to its config, so whoever must signal the broker
(the bridge reloading the CRL with SIGHUP) finds the one running now, also after a restart:
`current_pid` / `reload` read that file each time and check the PID really is mosquitto running with
that config (a stale file after a crash, or a recycled PID, is never signalled).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from local import procs
from local.osdeps import find_program
from otaformat.ids import is_epn

_MODEL = re.compile(r"[A-Za-z0-9_-]{1,64}")

DEVICE_WRITES = ("ack", "get", "status", "cmd/result")
DEVICE_READS = ("job", "blk", "cmd")
MAX_PACKET = 256 * 1024  # 120 KB blocks + frame header + MQTT overhead, well under this
MAX_INFLIGHT = 1024
MAX_QUEUED = 10000
CONF_FILE = "mosquitto.conf"
PID_FILE = "mosquitto.pid"
ACL_FILE = "mosquitto.acl"
CLOUD_USERS_FILE = "cloud-users.json"  # written at start, so the ACL can be rewritten without them
ROLES_FILE = "device-models.json"  # {epn: model}, next to the CRL (chalicelib/adapters/certificates.py)


class MosquittoMissing(procs.ProcessError):
    """mosquitto is not installed."""


@dataclass(frozen=True)
class BrokerFiles:
    """The TLS material the broker uses."""

    cafile: Path
    certfile: Path
    keyfile: Path
    crlfile: Path | None = None
    roles: Path | None = None  # {epn: model}; default: ROLES_FILE next to the CRL

    @property
    def roles_file(self) -> Path | None:
        if self.roles is not None:
            return self.roles
        return self.crlfile.parent / ROLES_FILE if self.crlfile is not None else None


def acl_text(cloud_users: Sequence[str], roles: Mapping[str, str] | None = None) -> str:
    """The ACL: each device its own topics and the group topics of its own model (one entry per device),
    each cloud identity all of `ota/#`."""
    lines = ["# devices: %u is the certificate CN (= EPN ID); reads and writes exactly as protocol v1"]
    lines += [f"pattern write ota/%u/{leaf}" for leaf in DEVICE_WRITES]
    lines += [f"pattern read ota/%u/{leaf}" for leaf in DEVICE_READS]
    for user in cloud_users:
        lines += ["", f"user {user}", "topic readwrite ota/#"]
    for epn, model in sorted((roles or {}).items()):
        if is_epn(epn) and _MODEL.fullmatch(model) and epn not in cloud_users:  # never a wildcard or a newline
            lines += ["", f"user {epn}", f"topic read ota/g/{model}/+/blk"]
    return "\n".join(lines) + "\n"


def read_roles(path: Path | None) -> dict[str, str]:
    """{epn: model} from the roles file; empty when absent or unreadable (no group topic for anyone)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_acl(directory: Path, roles: Mapping[str, str] | None = None,
              cloud_users: Sequence[str] | None = None) -> Path:
    """Write the ACL file (atomically); cloud users from the ones recorded at start unless given."""
    if cloud_users is None:
        try:
            cloud_users = [str(u) for u in json.loads((directory / CLOUD_USERS_FILE).read_text())]
        except (OSError, ValueError):
            cloud_users = []
    else:
        (directory / CLOUD_USERS_FILE).write_text(json.dumps(list(cloud_users)))
    acl = directory / ACL_FILE
    tmp = acl.with_suffix(".tmp")
    tmp.write_text(acl_text(cloud_users, roles))
    os.replace(tmp, acl)
    return acl


def refresh_acl(directory: Path, roles_file: Path) -> int | None:
    """Rewrite the ACL from the roles file and SIGHUP the broker running with `directory`'s config."""
    write_acl(directory, read_roles(roles_file))
    return reload(directory)


def config_text(port: int, files: BrokerFiles, acl_file: Path, pid_file: Path | None = None) -> str:
    lines = [
        "# written by local.mosquitto; regenerated on every start",
        "per_listener_settings false",
        f"user {_user()}",  # started as root, mosquitto would switch to 'mosquitto' and not read our keys
        *([f"pid_file {pid_file}"] if pid_file is not None else []),
        "allow_anonymous false",
        f"acl_file {acl_file}",
        f"max_packet_size {MAX_PACKET}",
        f"max_inflight_messages {MAX_INFLIGHT}",
        f"max_queued_messages {MAX_QUEUED}",
        "max_queued_bytes 0",
        "set_tcp_nodelay true",
        "persistence false",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "",
        f"listener {port} 127.0.0.1",
        "protocol mqtt",
        f"cafile {files.cafile}",
        f"certfile {files.certfile}",
        f"keyfile {files.keyfile}",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
    ]
    if files.crlfile is not None and files.crlfile.exists():
        lines.append(f"crlfile {files.crlfile}")
    return "\n".join(lines) + "\n"


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "root" if os.geteuid() == 0 else "mosquitto"


def find_mosquitto() -> str:
    path = find_program("mosquitto")
    if path is None:
        raise MosquittoMissing("mosquitto is not installed; install it with 'sudo apt-get install mosquitto "
                               "mosquitto-clients' (Debian/Ubuntu) or 'brew install mosquitto' (macOS), "
                               "or run 'python -m local.osdeps'")
    return path


def start(directory: Path, files: BrokerFiles, cloud_users: Sequence[str], *, port: int | None = None,
          timeout: float = 20.0) -> tuple[procs.Started, int]:
    """Write mosquitto.conf and acl in `directory`, start mosquitto on a free loopback port, wait for it."""
    binary = find_mosquitto()
    directory.mkdir(parents=True, exist_ok=True)
    port = port or procs.free_port()
    acl = write_acl(directory, read_roles(files.roles_file), cloud_users)
    conf = directory / CONF_FILE
    conf.write_text(config_text(port, files, acl, directory / PID_FILE))
    started = procs.start("mosquitto", [binary, "-c", str(conf)], directory / "mosquitto.log")
    try:
        procs.wait_until(started, lambda: procs.port_open(port), timeout, f"listening on 127.0.0.1:{port}")
    except BaseException:  # not ready, or interrupted (Ctrl-C): never leave it behind
        procs.stop(started)
        raise
    return started, port


def current_pid(directory: Path) -> int | None:
    """The PID of the mosquitto now running with `directory`/mosquitto.conf (from its pid file), or None."""
    try:
        pid = int((directory / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not procs.is_alive(pid):
        return None
    if not Path("/proc/self/cmdline").exists():
        return pid  # no /proc (macOS): trust a live PID
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None  # gone meanwhile
    conf = (directory / CONF_FILE).resolve()
    args = [Path(os.fsdecode(a)) for a in argv if a]
    if not args or "mosquitto" not in args[0].name or conf not in [a.resolve() for a in args[1:]]:
        return None  # a stale pid file whose PID now belongs to another process
    return pid


def reload(directory: Path) -> int | None:
    """SIGHUP the mosquitto running with `directory`'s config (it reloads the CRL and the ACL file); its PID,
    or None if none runs."""
    pid = current_pid(directory)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None
    return pid
