"""The local stack: starts moto server, mosquitto (mTLS), the HTTP API and the bridge, and stops them.

`up` makes the CA and certificates, starts each process on a free loopback port, provisions the AWS
resources on moto (chalicelib.adapters.provision through `python -m local.provisioner`), then starts
the API and the bridge, recording every process in stack.json (0600; it also holds the random operator
token, of which the API only gets the sha256) as soon as it runs. If anything fails, everything
already started is stopped before the error goes up. `down` stops every recorded process by PID.
It does not know what the API or the handlers do.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local import mosquitto, motoserver, procs
from local.ca import LocalCA

STACK_FILE = "stack.json"
PROJECT_DIR = Path(__file__).resolve().parent.parent
# cloud identities: not valid EPN IDs (they contain dots), so no device can ever be registered as one
CLOUD_IDENTITIES = {"api": "ota.cloud.api", "bridge": "ota.cloud.bridge", "rule": "ota.cloud.rule",
                    "operator": "ota.cloud.operator"}
RESOURCE_NAMES = {"OTA_TABLE_NAME": "ota-local", "OTA_STAGING_BUCKET": "ota-local-staging",
                  "OTA_REPOSITORY_BUCKET": "ota-local-repository", "OTA_STAGING_QUEUE": "ota-local-staging",
                  "OTA_DEVICE_QUEUE": "ota-local-device-messages", "OTA_FANOUT_QUEUE": "ota-local-fanout"}


class StackError(RuntimeError):
    """The stack cannot start, or there is no stack to act on."""


@dataclass(frozen=True)
class StackOptions:
    directory: Path
    project_dir: Path = PROJECT_DIR
    api: bool = True
    bridge: bool = True
    handlers: bool = True  # False: the bridge only forwards MQTT to SQS
    sweep_every: float = 5.0
    device_workers: int = 1  # concurrent pollers of the device-message queue in the bridge
    timeout: float = 60.0
    settings: tuple[tuple[str, str], ...] = ()  # extra OTA_* settings, e.g. the pacing rates (bench/pacing.py)


def stack_file(directory: Path) -> Path:
    return directory / STACK_FILE


def load(directory: Path) -> dict[str, Any]:
    path = stack_file(directory)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise StackError(f"no stack in {directory} (no {STACK_FILE}); start one with 'ota-local up'") from err
    except (OSError, ValueError) as err:
        raise StackError(f"cannot read {path}: {err}") from err


def _save(directory: Path, state: Mapping[str, Any]) -> None:
    path = stack_file(directory)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def running(directory: Path) -> list[procs.Started]:
    """Processes recorded in the stack file that still run."""
    try:
        state = load(directory)
    except StackError:
        return []
    return [p for p in map(procs.Started.from_dict, state.get("processes", [])) if procs.is_alive(p.pid)]


def base_env(moto_port: int, mqtt_port: int, ca: LocalCA, certs: Path, token_sha256: str) -> dict[str, str]:
    """The environment every cloud-side process of the stack gets (settings, no secret but the token hash)."""
    env = dict(RESOURCE_NAMES)
    env.update({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_SERVICE_NAME": "ota",
        "OTA_PUBLISHER": "mqtt", "OTA_SIGNER": "local-ca", "OTA_AUTH": "token",
        "OTA_MQTT_HOST": "127.0.0.1", "OTA_MQTT_PORT": str(mqtt_port), "OTA_OPERATOR_TOKEN_SHA256": token_sha256,
        "OTA_LOCAL_CA_DIR": str(ca.directory), "OTA_MQTT_CA": str(ca.cert_path),
        "OTA_MQTT_CLIENT_CERT": str(certs / "api.pem"), "OTA_MQTT_CLIENT_KEY": str(certs / "api.key"),
    })
    return env


def _process_env(stack_env: Mapping[str, str], project_dir: Path, **over: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTA_"))}
    env.update(stack_env)
    env.update(over)
    paths = dict.fromkeys([str(project_dir), str(PROJECT_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def operator_token(make: Callable[[int], str] = secrets.token_urlsafe) -> str:
    """A random operator token that never starts with '-' (so `ota --token T` cannot read it as an option)."""
    token = make(32)
    while token.startswith("-"):
        token = make(32)
    return token


def up(options: StackOptions) -> dict[str, Any]:
    """Start the stack in options.directory; return the stack state (also written to stack.json)."""
    directory = options.directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if running(directory):
        raise StackError(f"a stack already runs in {directory}; stop it with 'ota-local down --dir {directory}'")
    token = operator_token()
    state: dict[str, Any] = {"directory": str(directory), "token": token, "processes": [],
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _save(directory, state)
    try:
        _start_all(options, directory, state, token)
    except BaseException:
        stop_all(directory)
        raise
    return state


def _record(directory: Path, state: dict[str, Any], started: procs.Started) -> None:
    state["processes"].append(started.to_dict())
    _save(directory, state)


def _start_all(options: StackOptions, directory: Path, state: dict[str, Any], token: str) -> None:
    ca = LocalCA.create_or_load(directory / "ca")
    certs = directory / "certs"
    server = ca.server_cert(certs)
    for name, cn in CLOUD_IDENTITIES.items():
        ca.issue(certs, name, cn)
    moto, moto_port = motoserver.start(directory, timeout=options.timeout)
    _record(directory, state, moto)
    files = mosquitto.BrokerFiles(ca.cert_path, server.cert, server.key, ca.crl_path)
    broker, mqtt_port = mosquitto.start(directory / "mosquitto", files, list(CLOUD_IDENTITIES.values()),
                                        timeout=options.timeout)
    _record(directory, state, broker)
    env = base_env(moto_port, mqtt_port, ca, certs, hashlib.sha256(token.encode()).hexdigest())
    env.update(options.settings)
    state.update({"env": env, "moto_url": f"http://127.0.0.1:{moto_port}",
                  "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "ca": str(ca.cert_path)},
                  "certs": {name: {"cert": str(certs / f"{name}.pem"), "key": str(certs / f"{name}.key"), "cn": cn}
                            for name, cn in CLOUD_IDENTITIES.items()}})
    _save(directory, state)
    _provision(options, directory, env)
    if options.api:
        api_port = procs.free_port()
        argv = [sys.executable, "-m", "local.apiserver", "--port", str(api_port),
                "--project-dir", str(options.project_dir)]
        api = procs.start("api", argv, directory / "api.log", env=_process_env(env, options.project_dir),
                          cwd=options.project_dir)
        _record(directory, state, api)
        procs.wait_until(api, lambda: procs.port_open(api_port), options.timeout, f"listening on {api_port}")
        state["api_url"] = f"http://127.0.0.1:{api_port}"
        _save(directory, state)
    if options.bridge:
        bridge_env = _process_env(env, options.project_dir, OTA_MQTT_CLIENT_CERT=str(certs / "bridge.pem"),
                                  OTA_MQTT_CLIENT_KEY=str(certs / "bridge.key"))
        rule_argv = ["--mqtt-cert", str(certs / "rule.pem"), "--mqtt-key", str(certs / "rule.key")]
        if options.handlers:  # the topic rule in a process of its own: it stamps received_at on time
            _start_bridge(directory, state, options, "rule", ["--forward-only", *rule_argv], bridge_env)
        argv = ["--sweep-every", str(options.sweep_every), "--broker-dir", str(directory / "mosquitto"),
                "--device-workers", str(options.device_workers), *rule_argv,
                "--no-forward" if options.handlers else "--forward-only"]
        _start_bridge(directory, state, options, "bridge", argv, bridge_env)


def _start_bridge(directory: Path, state: dict[str, Any], options: StackOptions, name: str, args: list[str],
                  env: Mapping[str, str]) -> None:
    """One local.bridge process (`name`: "bridge" or "rule"), recorded in stack.json, once it is ready."""
    ready = directory / f"{name}.ready"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "local.bridge", "--ready-file", str(ready), *args]
    started = procs.start(name, argv, directory / f"{name}.log", env=dict(env), cwd=options.project_dir)
    _record(directory, state, started)
    procs.wait_until(started, ready.exists, options.timeout, "ready")


def broker_files(directory: Path) -> mosquitto.BrokerFiles:
    """The TLS material of the stack's broker (made by `up`)."""
    ca = LocalCA.create_or_load(directory / "ca")
    certs = directory / "certs"
    return mosquitto.BrokerFiles(ca.cert_path, certs / "server.pem", certs / "server.key", ca.crl_path)


def restart_broker(directory: Path, *, timeout: float = 60.0) -> procs.Started:
    """Stop the stack's mosquitto and start it again on the same port with the same files (it rereads the
    CRL); stack.json records the new process. The bridge finds the new PID in the broker's pid file."""
    directory = directory.resolve()
    state = load(directory)
    records = [procs.Started.from_dict(p) for p in state.get("processes", [])]
    old = next((p for p in records if p.name == "mosquitto"), None)
    if old is not None and not procs.stop(old):
        raise StackError(f"could not stop mosquitto (pid {old.pid})")
    started, _ = mosquitto.start(directory / "mosquitto", broker_files(directory),
                                 [c["cn"] for c in state["certs"].values()], port=int(state["mqtt"]["port"]),
                                 timeout=timeout)
    state["processes"] = [started.to_dict() if p.name == "mosquitto" else p.to_dict() for p in records]
    if old is None:
        state["processes"].append(started.to_dict())
    _save(directory, state)
    return started


def _provision(options: StackOptions, directory: Path, env: Mapping[str, str]) -> None:
    (directory / "resources.json").unlink(missing_ok=True)
    argv = [sys.executable, "-m", "local.provisioner", "--out", str(directory / "resources.json")]
    started = procs.start("provision", argv, directory / "provision.log",
                          env=_process_env(env, options.project_dir), cwd=options.project_dir)
    deadline = time.monotonic() + options.timeout
    try:
        while procs.is_alive(started.pid):
            if time.monotonic() > deadline:
                raise StackError(f"provisioning took over {options.timeout:.0f}s; log {started.log}")
            time.sleep(0.05)
    finally:
        procs.stop(started)
    if not (directory / "resources.json").exists():
        raise StackError(f"provisioning failed; log {started.log}:\n{procs.log_tail(started)}")


def stop_all(directory: Path, grace: float = 5.0) -> list[str]:
    """Stop every process recorded in stack.json, newest first; return the names of those stopped."""
    try:
        state = load(directory)
    except StackError:
        state = {"processes": []}
    stopped: list[str] = []
    left = []
    for started in reversed([procs.Started.from_dict(p) for p in state.get("processes", [])]):
        if procs.stop(started, grace):
            stopped.append(started.name)
        else:
            left.append(started.to_dict())
    for stray in procs.logging_under(directory):  # started, but interrupted before it was recorded
        if procs.stop(stray, grace):
            stopped.append(stray.name)
        else:
            left.append(stray.to_dict())
    state["processes"] = left
    if left:
        _save(directory, state)
        raise StackError(f"could not stop {', '.join(str(p['name']) for p in left)}")
    stack_file(directory).unlink(missing_ok=True)
    return stopped


def console_url(state: Mapping[str, Any]) -> str | None:
    """The web console's address (served by the API process, same origin; local/console.py)."""
    return f"{state['api_url']}/console/" if state.get("api_url") else None


def summary(state: Mapping[str, Any]) -> str:
    lines = [f"stack in {state['directory']}"]
    if state.get("api_url"):
        lines.append(f"  API        {state['api_url']}  (bearer token in {STACK_FILE})")
        lines.append(f"  console    {console_url(state)}  (sign-in link: ota-local console --dir {state['directory']})")
    lines.append(f"  moto       {state.get('moto_url')}")
    mqtt = state.get("mqtt", {})
    lines.append(f"  MQTT (TLS) 127.0.0.1:{mqtt.get('port')}  CA {mqtt.get('ca')}")
    for p in state.get("processes", []):
        lines.append(f"  pid {p['pid']:<8} {p['name']:<10} log {p['log']}")
    lines.append(f"stop it with: ota-local down --dir {state['directory']}")
    return "\n".join(lines)
