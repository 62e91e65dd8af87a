"""`ota-agent --config agent.toml`: validate the configuration, register if needed, run the agent.

Exit codes: 0 after SIGTERM/SIGINT, 2 for a bad configuration (one line naming the field), 1 for a
registration or start-up failure (one line), 75 after installing a new agent of itself (the service
manager starts it again: see agent.selfupdate, agent/ota-agent.service).
OTA_AGENT_CRASH_AT=<checkpoint>[:n] is for tests only: it kills the agent with SIGKILL at that checkpoint
(see docs/agent.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from otaformat.errors import FormatError

from . import AGENT_VERSION
from .config import ConfigError, load_config, transport_problem
from .machine import CHECKPOINTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ota-agent", description="OTA update device agent")
    parser.add_argument("--config", required=True, help="path of the TOML configuration file")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--log-level", default=os.environ.get("OTA_AGENT_LOG", "INFO"))
    parser.add_argument("--version", action="version", version=f"ota-agent {AGENT_VERSION}")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"ota-agent: configuration error: {err}", file=sys.stderr)
        return 2
    problem = transport_problem(config)
    if problem:
        print(f"ota-agent: configuration error: {problem}", file=sys.stderr)
        return 2
    crash_spec = os.environ.get("OTA_AGENT_CRASH_AT")
    if crash_spec and crash_spec.partition(":")[0] not in CHECKPOINTS:
        print(f"ota-agent: OTA_AGENT_CRASH_AT must be one of {', '.join(CHECKPOINTS)}", file=sys.stderr)
        return 2
    if args.check:
        print(f"ota-agent: configuration {args.config} is valid")
        return 0
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .installer import InstallError
    from .selfupdate import child_env, launch, wall_now
    from .store import StoreError

    try:  # the launcher: settle a self-update trial, then run the installed agent if there is one
        target = launch(config, ["--config", args.config, "--log-level", args.log_level], wall_now())
    except (OSError, StoreError, FormatError, InstallError) as err:
        print(f"ota-agent: cannot check for an installed agent: {err}", file=sys.stderr)
        return 1
    if target is not None:  # the installed agent (self-update): replace this process with it
        try:
            os.execve(target[0], target, child_env())
        except OSError as err:
            print(f"ota-agent: cannot start {target[0]}: {err.strerror}; running the factory agent", file=sys.stderr)
    from .guard import crash_point
    from .mqtt_transport import MqttTransport
    from .register import RegistrationError, register, stored_credentials
    from .runtime import Agent

    ca, cert, key = config.tls_ca, config.tls_cert, config.tls_key
    host, port = config.broker_host, config.broker_port
    if cert is None and config.api_url and config.registration_token:
        creds = stored_credentials(config.data_dir)
        if creds is None:
            try:
                os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
                creds = register(config.api_url, config.registration_token, config.epn, config.data_dir,
                                 AGENT_VERSION, config.installed_apps)
            except RegistrationError as err:
                print(f"ota-agent: {err}", file=sys.stderr)
                return 1
        ca, cert, key = creds.ca, creds.cert, creds.key
        host, port = creds.host or host, creds.port or port
    transport = MqttTransport(config.epn, host, port, ca=ca, cert=cert, key=key, keepalive=config.keepalive)
    try:
        agent = Agent(config, transport, crash=crash_point(crash_spec))
    except OSError as err:
        print(f"ota-agent: cannot use data_dir/install_root: {err}", file=sys.stderr)
        return 1
    except StoreError as err:
        print(f"ota-agent: {err}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: object) -> None:
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()
    return agent.restart_code
