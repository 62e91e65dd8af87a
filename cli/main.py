"""`ota`: the operator's command for the OTA service API (devices, keys, packages, jobs).

    ota [--api URL] [--token T] [--json] devices add EPN --model M | list | show EPN | rm EPN
    ota keys add PUBKEY.pem --name N | list | rm KEY_ID
    ota packages upload FILE | list | show ID | retire ID
    ota jobs create --package ID (--device EPN ... | --model M) [--mode block|url] [--block-size N] [--window W]
    ota jobs list | show ID [--device EPN] | cancel ID | watch ID

The URL and token default to OTA_API_URL / OTA_TOKEN, else to the local stack's .local-stack/stack.json.
An API on AWS (IAM auth) is called with SigV4 from the AWS credential chain: --auth sigv4 [--profile P]
[--region R], or automatically for an execute-api URL when no token is given.
Exit status: 0 ok; 1 the API refused (4xx), the package was REJECTED or a job did not fully succeed;
2 bad usage or a server error (5xx); 3 the API cannot be reached. Errors print one line: `error: ...`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from cli import commands as c
from cli.client import AUTH_MODES, ApiClient, CliError, resolve, with_auth
from cli.watch import watch


def _globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--api", default=default, help="API base URL (default $OTA_API_URL or the local stack)")
    parser.add_argument("--token", default=default, help="operator bearer token (default $OTA_TOKEN or the stack)")
    parser.add_argument("--stack-dir", type=Path, default=default, help="local stack directory (.local-stack)")
    parser.add_argument("--auth", choices=AUTH_MODES, default=default,
                        help="token (bearer), sigv4 (AWS IAM: botocore's credential chain) or auto (default: "
                             "sigv4 for an execute-api URL without a token)")
    parser.add_argument("--profile", default=default, help="AWS profile for --auth sigv4 (default $AWS_PROFILE)")
    parser.add_argument("--region", default=default, help="AWS region for --auth sigv4 (default from the URL)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print JSON for scripts")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _globals(common, suppress=True)
    parser = argparse.ArgumentParser(prog="ota", description="operate the OTA update service")
    _globals(parser, suppress=False)
    groups = parser.add_subparsers(dest="group", required=True)

    def group(name: str, text: str) -> argparse._SubParsersAction:
        return groups.add_parser(name, help=text).add_subparsers(dest="action", required=True)

    def action(sub: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, parents=[common])

    devices = group("devices", "register and inspect devices")
    p = action(devices, "add", "pre-authorise a device; prints its one-time registration token")
    p.add_argument("epn")
    p.add_argument("--model", required=True)
    action(devices, "list", "list devices").add_argument("--model")
    action(devices, "show", "one device and its executions").add_argument("epn")
    action(devices, "rm", "deregister a device and revoke its certificate").add_argument("epn")

    keys = group("keys", "publisher public keys packages are signed with")
    p = action(keys, "add", "register a publisher public key (PEM)")
    p.add_argument("pem", type=Path)
    p.add_argument("--name", required=True)
    action(keys, "list", "list keys")
    action(keys, "rm", "remove a key").add_argument("key_id")

    packages = group("packages", "upload and manage packages")
    p = action(packages, "upload", "upload a package and wait for the scan verdict")
    p.add_argument("file", type=Path)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the verdict")
    p = action(packages, "list", "list packages")
    for name in ("app", "model", "version", "state"):
        p.add_argument(f"--{name}")
    action(packages, "show", "one package, with the scan reasons").add_argument("upload_id")
    action(packages, "retire", "retire a package").add_argument("upload_id")

    jobs = group("jobs", "roll packages out to devices")
    p = action(jobs, "create", "send a package to devices")
    p.add_argument("--package", required=True, help="package (upload) id")
    p.add_argument("--device", action="append", dest="devices", metavar="EPN", help="target device (repeatable)")
    p.add_argument("--model", help="target every device of this model")
    p.add_argument("--mode", choices=("block", "url"))
    p.add_argument("--block-size", type=int)
    p.add_argument("--window", type=int)
    p.add_argument("--stall-seconds", type=int)
    p.add_argument("--total-seconds", type=int)
    p.add_argument("--idempotency-key")
    action(jobs, "list", "list jobs")
    p = action(jobs, "show", "a job, or one device's execution with its timeline")
    p.add_argument("job_id")
    p.add_argument("--device")
    action(jobs, "cancel", "cancel a job").add_argument("job_id")
    p = action(jobs, "watch", "live progress until every execution ends; exit 0 only if all SUCCEEDED")
    p.add_argument("job_id")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    return parser


def run(args: argparse.Namespace, api: ApiClient, out: c.Output) -> int:
    g, a = args.group, args.action
    if g == "devices":
        if a == "add":
            return c.devices_add(api, out, args.epn, args.model)
        if a == "list":
            return c.devices_list(api, out, args.model)
        return c.devices_show(api, out, args.epn) if a == "show" else c.devices_rm(api, out, args.epn)
    if g == "keys":
        if a == "add":
            return c.keys_add(api, out, args.pem, args.name)
        return c.keys_list(api, out) if a == "list" else c.keys_rm(api, out, args.key_id)
    if g == "packages":
        if a == "upload":
            return c.packages_upload(api, out, args.file, args.timeout)
        if a == "list":
            filters = {"app": args.app, "model": args.model, "version": args.version, "state": args.state}
            return c.packages_list(api, out, filters)
        return c.packages_show(api, out, args.upload_id) if a == "show" else c.packages_retire(api, out,
                                                                                               args.upload_id)
    if a == "create":
        body = c.job_body(args.package, args.devices, args.model, args.mode, args.block_size, args.window,
                          args.stall_seconds, args.total_seconds)
        return c.jobs_create(api, out, body, args.idempotency_key)
    if a == "list":
        return c.jobs_list(api, out)
    if a == "show":
        return c.jobs_show(api, out, args.job_id, args.device)
    if a == "cancel":
        return c.jobs_cancel(api, out, args.job_id)
    return watch(api, out, args.job_id, args.interval, args.timeout)


def main(argv: list[str] | None = None, out: c.Output | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or c.Output()
    out.json = bool(args.json)
    try:
        target = resolve(args.api, args.token, args.stack_dir, os.environ if environ is None else environ)
        api = ApiClient(with_auth(target, args.auth or "auto", args.profile, args.region))
        return run(args, api, out)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
