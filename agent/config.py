"""The agent's TOML configuration: a frozen value, fully validated at start (docs/agent.md).

`load_config(path)` raises ConfigError with one sentence naming the bad field; relative paths are
resolved against the config file's directory. Reading key files and checking they parse happens here
too, so a bad key is a start-up error, never a verification surprise. No network, no state.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from otaformat import commands as oc
from otaformat.errors import FormatError
from otaformat.ids import check_app, check_epn, check_model
from otaformat.messages import CHANNEL
from otaformat.signing import key_id, load_public_key
from otaformat.versions import Version

MAX_MANAGED_APPS = 8


class ConfigError(Exception):
    """The configuration is unusable; the message names the field."""


@dataclass(frozen=True)
class Config:
    epn: str
    model: str
    data_dir: str
    install_root: str
    trusted_keys: dict[str, ec.EllipticCurvePublicKey]
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    api_url: str | None = None
    registration_token: str | None = None
    installed_apps: dict[str, str] = field(default_factory=dict)
    managed_apps: tuple[str, ...] = ()
    script_timeout: float = 300.0
    stall_budget: float = 120.0
    max_package_size: int = 256 << 20
    ack_idle: float = 0.05
    ack_fraction: float = 0.5
    fsync_interval: float = 0.2
    keepalive: int = 30
    broker_plaintext: bool = False  # [broker] plaintext = true: MQTT without TLS, asked for explicitly
    command_allow: tuple[str, ...] = ()  # remote command types this device runs (none unless listed)
    command_hooks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # type -> argv
    command_output_max: int = 4096
    restart_grace: float = 120.0
    log_file: str | None = None
    channel: str | None = None  # automatic updates ([auto]); None: off
    check_interval: float = 3600.0
    check_jitter: float = 0.2
    pins: dict[str, str] = field(default_factory=dict)  # app -> version kept (never updated automatically)
    opt_out: tuple[str, ...] = ()  # managed apps not updated automatically
    self_update_app: str | None = None  # [self_update] app: packages of kind agent for it replace this agent
    trial_seconds: float = 120.0  # the new agent must connect and confirm within this


def _table(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] must be a table")
    return value


def _string(d: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = d.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}{key} is required")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}{key} must be a non-empty string")
    return value


def _number(d: dict[str, Any], key: str, where: str, default: float, low: float, high: float) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}{key} must be a number")
    if not low <= value <= high:
        raise ConfigError(f"{where}{key} must be between {low} and {high}")
    return value


def _path(base: str, value: str | None) -> str | None:
    return None if value is None else os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def _readable(path: str | None, what: str) -> None:
    if path is not None and not os.path.isfile(path):
        raise ConfigError(f"{what} file {path} does not exist")


def load_config(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    return parse_config(raw, os.path.dirname(os.path.abspath(path)))


def parse_config(raw: dict[str, Any], base: str) -> Config:
    known = {"epn", "model", "data_dir", "install_root", "broker", "tls", "registration", "trust", "apps",
             "limits", "ack", "commands", "auto", "self_update"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    try:
        epn = check_epn(raw.get("epn"))
        model = check_model(raw.get("model"))
    except FormatError as err:
        raise ConfigError(f"epn/model: {err.reason}") from err
    data_dir = _path(base, _string(raw, "data_dir", "", required=True))
    install_root = _path(base, _string(raw, "install_root", "", required=True))
    assert data_dir is not None and install_root is not None

    broker = _table(raw, "broker")
    host = _string(broker, "host", "broker.") or "127.0.0.1"
    port = int(_number(broker, "port", "broker.", 1883, 1, 65535))
    keepalive = int(_number(broker, "keepalive", "broker.", 30, 5, 3600))
    plaintext = broker.get("plaintext", False)
    if not isinstance(plaintext, bool):
        raise ConfigError("broker.plaintext must be true or false")

    tls = _table(raw, "tls")
    ca, cert, key = (_path(base, _string(tls, k, "tls.")) for k in ("ca", "cert", "key"))
    if (cert is None) != (key is None):
        raise ConfigError("tls.cert and tls.key must be given together")
    for p, what in ((ca, "tls.ca"), (cert, "tls.cert"), (key, "tls.key")):
        _readable(p, what)

    reg = _table(raw, "registration")
    api_url = _string(reg, "api_url", "registration.")
    token = _string(reg, "token", "registration.")
    if (api_url is None) != (token is None):
        raise ConfigError("registration.api_url and registration.token must be given together")
    if api_url is not None and not api_url.startswith(("https://", "http://")):
        raise ConfigError("registration.api_url must be an http(s) URL")

    trust = _table(raw, "trust")
    key_files = trust.get("publisher_keys")
    if not isinstance(key_files, list) or not key_files or not all(isinstance(k, str) for k in key_files):
        raise ConfigError("trust.publisher_keys must be a non-empty list of PEM public key files")
    trusted: dict[str, ec.EllipticCurvePublicKey] = {}
    for name in key_files:
        full = _path(base, name)
        assert full is not None
        _readable(full, "trust.publisher_keys")
        try:
            with open(full, "rb") as f:
                public = load_public_key(f.read())
        except FormatError as err:
            raise ConfigError(f"trust.publisher_keys: {full}: {err.reason}") from err
        trusted[key_id(public)] = public

    apps = _table(raw, "apps")
    installed = apps.get("installed", {})
    if not isinstance(installed, dict):
        raise ConfigError("apps.installed must be a table of app = \"version\"")
    try:
        for name, version in installed.items():
            check_app(name)
            Version.parse(version)
    except FormatError as err:
        raise ConfigError(f"apps.installed: {err.reason}") from err
    managed = apps.get("managed", [])
    if not isinstance(managed, list) or not all(isinstance(m, str) for m in managed):
        raise ConfigError("apps.managed must be a list of app names")
    if len(managed) > MAX_MANAGED_APPS:
        raise ConfigError(f"apps.managed lists {len(managed)} apps; at most {MAX_MANAGED_APPS} are supported")
    try:
        for name in managed:
            check_app(name)
    except FormatError as err:
        raise ConfigError(f"apps.managed: {err.reason}") from err

    limits = _table(raw, "limits")
    ack = _table(raw, "ack")
    commands = _commands(_table(raw, "commands"), base)
    auto = _auto(_table(raw, "auto"), tuple(managed))
    update = _table(raw, "self_update")
    if sorted(set(update) - {"app", "trial_seconds"}):
        raise ConfigError(f"unknown key self_update.{sorted(set(update) - {'app', 'trial_seconds'})[0]}")
    try:
        self_app = None if update.get("app") is None else check_app(update.get("app"))
    except FormatError as err:
        raise ConfigError(f"self_update.app: {err.reason}") from err
    return Config(
        epn=epn, model=model, data_dir=data_dir, install_root=install_root, trusted_keys=trusted,
        broker_host=host, broker_port=port, tls_ca=ca, tls_cert=cert, tls_key=key,
        api_url=api_url, registration_token=token, installed_apps=dict(installed), managed_apps=tuple(managed),
        script_timeout=_number(limits, "script_timeout", "limits.", 300, 0.1, 86400),
        stall_budget=_number(limits, "stall_budget", "limits.", 120, 0.1, 86400),
        max_package_size=int(_number(limits, "max_package_size", "limits.", 256 << 20, 1, 4 << 30)),
        ack_idle=_number(ack, "idle_ms", "ack.", 50, 1, 10000) / 1000,
        ack_fraction=_number(ack, "fraction", "ack.", 0.5, 0.01, 1.0),
        fsync_interval=_number(ack, "fsync_ms", "ack.", 200, 1, 10000) / 1000,
        keepalive=keepalive, broker_plaintext=plaintext, **commands, **auto, self_update_app=self_app,
        trial_seconds=_number(update, "trial_seconds", "self_update.", 120, 5, 86400),
    )


HOOKS = {"reboot": "reboot", "restart-agent": "restart_agent", "restart-app": "restart_app"}


def _commands(table: dict[str, Any], base: str) -> dict[str, Any]:
    """[commands]: allow (command types), one hook argv per restart type, output_max, restart_grace, log_file."""
    known = {"allow", "output_max", "restart_grace", "log_file", *HOOKS.values()}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"unknown key commands.{unknown[0]}")
    allow = table.get("allow", [])
    if not isinstance(allow, list) or not all(a in oc.TYPES for a in allow):
        raise ConfigError(f"commands.allow must be a list of command types ({', '.join(oc.TYPES)})")
    hooks: dict[str, tuple[str, ...]] = {}
    for kind, key in HOOKS.items():
        argv = table.get(key)
        if argv is None:
            if kind in allow:
                raise ConfigError(f"commands.allow lists {kind} but commands.{key} (the hook's argv) is not set")
            continue
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            raise ConfigError(f"commands.{key} must be a non-empty list of strings (argv)")
        hooks[kind] = tuple(argv)
    return {"command_allow": tuple(allow), "command_hooks": hooks,
            "command_output_max": int(_number(table, "output_max", "commands.", 4096, 256, oc.MAX_OUTPUT)),
            "restart_grace": _number(table, "restart_grace", "commands.", 120, 1, 3600),
            "log_file": _path(base, _string(table, "log_file", "commands."))}


def _auto(table: dict[str, Any], managed: tuple[str, ...]) -> dict[str, Any]:
    """[auto]: channel (turns automatic updates on), check_interval, check_jitter, pin, opt_out."""
    unknown = sorted(set(table) - {"channel", "check_interval", "check_jitter", "pin", "opt_out"})
    if unknown:
        raise ConfigError(f"unknown key auto.{unknown[0]}")
    channel = table.get("channel")
    if channel is not None and (not isinstance(channel, str) or not CHANNEL.fullmatch(channel)):
        raise ConfigError(f"auto.channel must match {CHANNEL.pattern}")
    pins, opt_out = table.get("pin", {}), table.get("opt_out", [])
    if not isinstance(pins, dict) or not isinstance(opt_out, list):
        raise ConfigError("auto.pin must be a table of app = \"version\" and auto.opt_out a list of apps")
    for app in [*pins, *opt_out]:
        if app not in managed:
            raise ConfigError(f"auto.pin/auto.opt_out name {str(app)[:64]!r}, which is not in apps.managed")
    try:
        for version in pins.values():
            Version.parse(version)
    except FormatError as err:
        raise ConfigError(f"auto.pin: {err.reason}") from err
    return {"channel": channel, "pins": dict(pins), "opt_out": tuple(opt_out),
            "check_interval": _number(table, "check_interval", "auto.", 3600, 1, 7 * 86400),
            "check_jitter": _number(table, "check_jitter", "auto.", 0.2, 0, 0.9)}


def transport_problem(config: Config) -> str | None:
    """Why this configuration must not start, or None: without TLS credentials ([tls] cert/key) and
    without [registration] (which provides them) the agent would speak plain MQTT, which it does only
    when `broker.plaintext = true` says so."""
    if config.tls_cert or (config.api_url and config.registration_token) or config.broker_plaintext:
        return None
    return ("neither [tls] (cert and key) nor [registration] is configured, so the agent would talk plain "
            "MQTT; set [broker] plaintext = true to allow that (closed test networks only)")
