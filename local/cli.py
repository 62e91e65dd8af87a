"""`ota-local`: start, stop and describe the local stack.

    ota-local up [--dir .local-stack] [--foreground] [--sweep-every S]
    ota-local down [--dir .local-stack]
    ota-local env [--dir .local-stack]      # export lines: eval "$(ota-local env)"
    ota-local status [--dir .local-stack]
    ota-local console [--dir .local-stack]  # the web console's sign-in link (it holds the token)

`up` returns once everything runs (the processes keep running in the background) unless
`--foreground`, which stays until Ctrl-C or until one process dies, and then stops them all.
Errors print one line and exit non-zero; on any failure during `up`, what was started is stopped.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cli.parser import version
from local import procs
from local.stack import StackError, StackOptions, console_url, load, running, stop_all, summary, up

DEFAULT_DIR = Path(".local-stack")


def env_lines(state: dict[str, Any]) -> list[str]:
    """Shell lines exporting what `ota`, `ota-agent` and the cloud-side code need to use the stack."""
    env = dict(state.get("env", {}))
    operator = state.get("certs", {}).get("operator")
    if operator:  # a process run by hand must not share the API's MQTT identity (it would kick it off)
        env["OTA_MQTT_CLIENT_CERT"], env["OTA_MQTT_CLIENT_KEY"] = operator["cert"], operator["key"]
    if state.get("api_url"):
        env["OTA_API_URL"] = state["api_url"]
    env["OTA_TOKEN"] = state["token"]
    return [f"export {key}={shlex.quote(str(value))}" for key, value in sorted(env.items())]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ota-local", description="the OTA service on one machine")
    parser.add_argument("--version", action="version", version=f"ota-local {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("up", "start the stack"), ("down", "stop every process of the stack"),
                       ("env", "print export lines for the stack"), ("status", "show what runs"),
                       ("console", "print the web console's sign-in link (it holds the operator token)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="stack directory (default .local-stack)")
        if name == "up":
            p.add_argument("--foreground", action="store_true", help="stay, and stop everything on Ctrl-C")
            p.add_argument("--sweep-every", type=float, default=5.0, help="seconds between sweeps")
            p.add_argument("--device-workers", type=int, default=1, help="bridge pollers of the device queue")
            p.add_argument("--timeout", type=float, default=60.0, help="seconds each process may take to start")
    return parser


def _console(state: dict[str, Any]) -> int:
    """The console's sign-in link: the token rides in the URL fragment, which the browser never sends; the
    page keeps it in sessionStorage and removes it from the address bar (web/js/session.js)."""
    url = console_url(state)
    if url is None:
        print("error: this stack runs no API", file=sys.stderr)
        return 1
    print(f"{url}#token={quote(state['token'], safe='')}")
    print("(this link signs in as the operator: treat it as the token; the page keeps it for that tab only)",
          file=sys.stderr)
    return 0


def _interrupt(*_args: object) -> None:
    raise KeyboardInterrupt


def _foreground(directory: Path) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    state = load(directory)
    watched = [procs.Started.from_dict(p) for p in state["processes"]]
    print("running in the foreground; Ctrl-C stops everything", flush=True)
    code = 0
    while not stop.wait(1.0):
        dead = [p for p in watched if not procs.is_alive(p.pid)]
        if dead:
            print(f"error: {dead[0].name} stopped; see {dead[0].log}; stopping the stack", file=sys.stderr)
            code = 1
            break
    print("stopping: " + ", ".join(stop_all(directory)), flush=True)
    return code


def _up(args: argparse.Namespace, directory: Path) -> int:
    options = StackOptions(directory, sweep_every=args.sweep_every, timeout=args.timeout,
                           device_workers=args.device_workers)
    # stopped while starting: clean up as on Ctrl-C (set explicitly: a parent may have ignored SIGINT)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        state = up(options)  # stops what it started when interrupted, and so does the handler below
        print(summary(state))
        print(f"use it: eval \"$(ota-local env --dir {directory})\"; ota devices list", flush=True)
        return _foreground(directory.resolve()) if args.foreground else 0
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("interrupted; stopping: " + ", ".join(stop_all(directory)), flush=True)
        return 130


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    directory: Path = args.dir
    try:
        if args.command == "up":
            return _up(args, directory)
        if args.command == "down":
            stopped = stop_all(directory)
            print("stopped: " + ", ".join(stopped) if stopped else f"nothing runs in {directory}")
            return 0
        if args.command == "env":
            print("\n".join(env_lines(load(directory))))
            return 0
        if args.command == "console":
            return _console(load(directory))
        state = load(directory)
        alive = {p.pid for p in running(directory)}
        print(summary(state))
        for p in state.get("processes", []):
            print(f"  {p['name']:<10} {'running' if p['pid'] in alive else 'STOPPED'}")
        return 0 if len(alive) == len(state.get("processes", [])) else 1
    except (StackError, procs.ProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
