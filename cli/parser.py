"""The `ota` command line: every option with its help, default and bounds, every command with an
example, the exit-code contract in `ota --help`. Parsing errors raise UsageError (one line, exit 2,
JSON with --json) instead of argparse's usage dump. Does not: call the API.
"""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from cli.client import AUTH_MODES, UsageError
from cli.refs import FORMS

EXIT_CODES = """exit status:
  0  done (a package AVAILABLE, every execution of a watched job SUCCEEDED)
  1  refused: the API answered 4xx, the package was REJECTED (or refused locally before upload),
     or a watched job did not fully succeed
  2  bad usage, missing configuration, or a server error (5xx)
  3  the API cannot be reached
errors are one line on stderr: 'error: ...', or with --json {"error": {"code", "message", "field"}}"""

WHERE = """where the API is: --api / $OTA_API_URL, else the local stack's .local-stack/stack.json.
auth: the bearer token (--token / $OTA_TOKEN / the stack) for the local stack; SigV4 from the AWS
credential chain for an API on AWS (--auth sigv4, or automatically for an execute-api URL)."""

PACKAGE_REF = f"package: {FORMS}"


def version() -> str:
    try:
        return metadata.version("ota-service")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--api", default=default, metavar="URL", help="API base URL")
    parser.add_argument("--token", default=default, help="operator bearer token (local stack)")
    parser.add_argument("--stack-dir", type=Path, default=default, metavar="DIR",
                        help="local stack directory holding stack.json (.local-stack when not given)")
    parser.add_argument("--auth", choices=AUTH_MODES, default=default,
                        help="token, sigv4 (AWS IAM), or auto: sigv4 for an execute-api URL without a token "
                             "(auto when not given)")
    parser.add_argument("--profile", default=default, help="AWS profile for sigv4 ($AWS_PROFILE when not given)")
    parser.add_argument("--region", default=default, help="AWS region for sigv4 (from the URL when not given)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print JSON for scripts (errors too, on stderr)")


def _int(low: int, high: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value
    parse.__name__ = "integer"
    return parse  # type: ignore[return-value]


def _limit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=_int(1, 1_000_000), metavar="N",
                   help="show only the first N (default: every page of the listing)")


def build_parser() -> Parser:
    common = Parser(add_help=False)
    _globals(common, suppress=True)
    parser = Parser(prog="ota", description="Operate the OTA update service: devices, keys, packages, jobs.\n\n"
                    + WHERE, epilog=EXIT_CODES, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"ota {version()}")
    _globals(parser, suppress=False)
    groups = parser.add_subparsers(dest="group", required=True,
                                   metavar="{devices,keys,packages,jobs,commands,releases}")

    def group(name: str, text: str) -> argparse._SubParsersAction:
        sub = groups.add_parser(name, help=text, description=text, epilog=EXIT_CODES, formatter_class=_Formatter)
        return sub.add_subparsers(dest="action", required=True)

    def action(sub: argparse._SubParsersAction, name: str, text: str, *examples: str) -> argparse.ArgumentParser:
        epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in examples)
        return sub.add_parser(name, help=text, description=text, parents=[common], epilog=epilog,
                              formatter_class=_Formatter)

    devices = group("devices", "register and inspect devices")
    p = action(devices, "add", "pre-authorise a device; prints its one-time registration token",
               "ota devices add pump-0042 --model model-a")
    p.add_argument("epn", help="EPN ID: 1..64 of [A-Za-z0-9_-]")
    p.add_argument("--model", required=True, help="model number: 1..64 of [A-Za-z0-9_-]")
    p = action(devices, "list", "list devices (every page, or the first --limit)", "ota devices list --model model-a")
    p.add_argument("--model", help="only devices of this model")
    _limit(p)
    action(devices, "show", "one device and its executions", "ota devices show pump-0042").add_argument(
        "epn", help="EPN ID")
    action(devices, "rm", "deregister a device and revoke its certificate", "ota devices rm pump-0042").add_argument(
        "epn", help="EPN ID")
    for kind in ("reboot", "restart-agent"):
        p = action(devices, kind, f"send a signed {kind} command to one device and wait for its result",
                   f"ota devices {kind} pump-0042 --key keys/publisher.key")
        p.add_argument("epn", help="EPN ID")
        _signing(p, wait=False)

    keys = group("keys", "publisher public keys packages are signed with")
    p = action(keys, "add", "register a publisher public key (PEM, ECDSA P-256)",
               "ota keys add keys/publisher.pub --name release-2026")
    p.add_argument("pem", type=Path, help="public key file made by 'ota-pack keygen'")
    p.add_argument("--name", required=True, help="a label for people: 1..128 characters")
    action(keys, "list", "list keys", "ota keys list")
    action(keys, "rm", "remove a key", "ota keys rm 0123456789abcdef").add_argument("key_id", help="16 hex")

    packages = group("packages", "upload and manage packages")
    p = action(packages, "upload", "check a package locally, upload it and wait for the scan's verdict",
               "ota packages upload demo-1.0.0.otapkg", "ota packages upload --no-local-check suspicious.otapkg")
    p.add_argument("file", type=Path, help="package file made by 'ota-pack build' or 'ota-pack delta'")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the verdict")
    p.add_argument("--no-local-check", action="store_true",
                   help="upload without checking the file and its signature first (the scan still decides)")
    p = action(packages, "list", "list packages", "ota packages list --app demo --state AVAILABLE")
    p.add_argument("--app", help="only this app")
    p.add_argument("--model", help="only packages for this model")
    p.add_argument("--version", dest="app_version", metavar="VERSION", help="only this MAJOR.MINOR.PATCH")
    p.add_argument("--state", choices=("PENDING", "AVAILABLE", "REJECTED", "RETIRED"), help="only this state")
    _limit(p)
    action(packages, "show", "one package, with the scan reasons", "ota packages show demo@1.0.0",
           "ota packages show up-0123456789abcdef0123").add_argument("package", help=PACKAGE_REF)
    action(packages, "retire", "retire a package (no new jobs may use it)",
           "ota packages retire demo@1.0.0").add_argument("package", help=PACKAGE_REF)

    jobs = group("jobs", "roll packages out to devices")
    p = action(jobs, "create", "send a package to devices",
               "ota jobs create --package demo@1.1.0 --model model-a",
               "ota jobs create --package demo@1.0.0..1.1.0 --device pump-0042 --mode url")
    p.add_argument("--package", required=True, help=PACKAGE_REF)
    p.add_argument("--device", action="append", dest="devices", metavar="EPN",
                   help="target device (repeatable, 1..1000)")
    p.add_argument("--model", help="target every registered device of this model")
    p.add_argument("--mode", choices=("block", "url"), help="block: MQTT blocks; url: HTTPS download (block)")
    p.add_argument("--block-size", type=_int(256, 122880), metavar="BYTES",
                   help="bytes per block, 256..122880 (32768)")
    p.add_argument("--window", type=_int(1, 100), help="blocks in flight per device, 1..100 (64)")
    p.add_argument("--stall-seconds", type=_int(5, 86400), metavar="S",
                   help="no progress for this long: TIMED_OUT, 5..86400 (300)")
    p.add_argument("--total-seconds", type=_int(60, 30 * 86400), metavar="S",
                   help="execution deadline, 60..2592000 (604800)")
    p.add_argument("--fallback", metavar="PACKAGE",
                   help="with a delta --package: the full package of the same version that devices not on the "
                        "delta's base (another older version, or no app) take instead of being SKIPPED; "
                        + PACKAGE_REF)
    p.add_argument("--all-or-nothing", action="store_true",
                   help="refuse the job if any target cannot take the package (default: those are SKIPPED)")
    p.add_argument("--continuous", action="store_true",
                   help="with --model: devices of the model registered later get the job too")
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--wave-size", type=_int(1, 10_000), metavar="N",
                       help="staged rollout: N devices per wave, in target order (1..10000)")
    sizes.add_argument("--wave-percent", type=_int(1, 100), metavar="P",
                       help="staged rollout: P percent of the targets per wave (1..100)")
    gates = p.add_mutually_exclusive_group()
    gates.add_argument("--wave-pause", type=_int(0, 7 * 86400), metavar="S",
                       help="with --wave-size/--wave-percent: start the next wave S seconds after the previous "
                            "one finished (0)")
    gates.add_argument("--wave-interval", type=_int(1, 7 * 86400), metavar="S",
                       help="with --wave-size/--wave-percent: start the next wave S seconds after the previous "
                            "one started")
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="1..128 of [A-Za-z0-9._:-]: repeating the command with it creates one job")
    p.add_argument("--estimate", action="store_true",
                   help="only print what the rollout would cost on AWS (POST /jobs?dry_run=true); create nothing")
    p.add_argument("--loss", type=float, metavar="SHARE",
                   help="with --estimate: expected share of blocks lost on first arrival, 0..0.5 (0)")
    _limit(action(jobs, "list", "list jobs (newest first) with app, version and progress", "ota jobs list"))
    p = action(jobs, "show", "a job, or one device's execution with its timeline", "ota jobs show job-0123",
               "ota jobs show job-0123 --device pump-0042")
    p.add_argument("job_id", help="job id")
    p.add_argument("--device", metavar="EPN", help="show this device's execution and its timeline")
    action(jobs, "cancel", "cancel a job", "ota jobs cancel job-0123").add_argument("job_id", help="job id")
    p = action(jobs, "watch", "live progress until every execution ends; exit 0 only if all SUCCEEDED",
               "ota jobs watch job-0123 --timeout 600")
    p.add_argument("job_id", help="job id")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (never)")

    commands = group("commands", "signed remote commands: reboot, restart the agent or an app, run a script, logs")
    p = action(commands, "send", "sign a command with your publisher key and send it to devices",
               "ota commands send run-script --script check.sh --model model-a --key keys/publisher.key --wait",
               "ota commands send collect-logs --device pump-0042 --max-bytes 4096 --key keys/publisher.key",
               "ota commands send restart-app --app demo --device pump-0042 --key keys/publisher.key")
    p.add_argument("type", choices=("reboot", "restart-agent", "restart-app", "run-script", "collect-logs"),
                   help="what the devices do (each must be allowed in the device's [commands] allow)")
    p.add_argument("--device", action="append", dest="devices", metavar="EPN", help="target device (repeatable)")
    p.add_argument("--model", help="target every registered device of this model")
    p.add_argument("--script", type=Path, metavar="FILE", help="run-script: the script to run (at most 8 KiB)")
    p.add_argument("--app", help="restart-app: the app to restart")
    p.add_argument("--max-bytes", type=_int(1, 8192), metavar="N", help="collect-logs: bytes of log, 1..8192")
    _signing(p, wait=True)
    _limit(action(commands, "list", "list commands (newest first) with counts per state", "ota commands list"))
    action(commands, "show", "a command and every device's result and output",
           "ota commands show cmd-0123456789abcdef0123").add_argument("command_id", help="command id")
    p = action(commands, "watch", "follow a command until every device has a result; exit 0 only if all SUCCEEDED",
               "ota commands watch cmd-0123456789abcdef0123 --timeout 120")
    p.add_argument("command_id", help="command id")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (never)")

    releases = group("releases", "what devices that update automatically should run")
    p = action(releases, "publish", "publish a release: devices of the model on the channel that update the app "
               "automatically install it", "ota releases publish demo 1.0.5 --model m1 --channel stable")
    p.add_argument("app", help="app name")
    p.add_argument("app_version", metavar="version", help="MAJOR.MINOR.PATCH of an AVAILABLE full package")
    p.add_argument("--model", required=True, help="model number the release is for")
    p.add_argument("--channel", default="stable", help="release channel (agent config [auto] channel)")
    _limit(action(releases, "list", "list releases, newest first", "ota releases list"))
    return parser


def _signing(p: argparse.ArgumentParser, *, wait: bool) -> None:
    p.add_argument("--key", type=Path, required=True, metavar="PEM",
                   help="publisher private key to sign with (made by 'ota-pack keygen'; never sent anywhere)")
    p.add_argument("--timeout-seconds", type=_int(1, 3600), default=60, metavar="S",
                   help="how long the device lets the command run, 1..3600")
    p.add_argument("--expires-in", type=_int(60, 7 * 86400), default=3600, metavar="S",
                   help="devices refuse the command after this many seconds (an offline device gets it when it "
                        "returns until then), 60..604800")
    if wait:
        p.add_argument("--wait", action="store_true", help="follow the command until every device has a result")
    p.add_argument("--wait-timeout", type=float, default=None, metavar="S",
                   help="with --wait (always for the device shortcuts): give up after this many seconds")
