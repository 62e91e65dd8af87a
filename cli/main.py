"""`ota`: the operator's command for the OTA service API (devices, keys, packages, jobs).

    ota [--api URL] [--token T] [--json] devices add EPN --model M | list | show EPN | rm EPN
    ota keys add PUBKEY.pem --name N | list | rm KEY_ID
    ota packages upload FILE | list | show PKG | retire PKG
    ota jobs create --package PKG (--device EPN ... | --model M) [--mode block|url] [--block-size N] [--window W]
                    [--fallback FULL_PKG]  (a delta PKG: devices off its base take FULL_PKG)
    ota jobs list | show ID [--device EPN] | cancel ID | watch ID
    ota commands send TYPE (--device EPN ... | --model M) --key PUBLISHER.key [--script F] [--wait] | list | show ID
    ota devices reboot|restart-agent EPN --key PUBLISHER.key
    ota releases publish APP VERSION --model M [--channel C] | list

PKG is an upload id or a name (`demo@1.1.0`, `demo@1.0.0..1.1.0`, `demo@1.1.0:MODEL`; cli.refs). The
options, defaults, bounds, examples and exit codes are in cli.parser (and `ota --help`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence

from cli import commands as c
from cli import refs, releases, remote
from cli.client import ApiClient, ApiError, CliError, resolve, with_auth
from cli.parser import build_parser
from cli.watch import watch


def run(args: argparse.Namespace, api: ApiClient, out: c.Output) -> int:
    g, a = args.group, args.action
    if g == "commands" or a in ("reboot", "restart-agent"):
        return run_remote(args, api, out)
    if g == "releases":
        if a == "publish":
            return releases.publish(api, out, args.app, args.app_version, args.model, args.channel)
        return releases.list_(api, out, args.limit)
    if g == "devices":
        if a == "add":
            return c.devices_add(api, out, args.epn, args.model)
        if a == "list":
            return c.devices_list(api, out, args.model, args.limit)
        return c.devices_show(api, out, args.epn) if a == "show" else c.devices_rm(api, out, args.epn)
    if g == "keys":
        if a == "add":
            return c.keys_add(api, out, args.pem, args.name)
        return c.keys_list(api, out) if a == "list" else c.keys_rm(api, out, args.key_id)
    if g == "packages":
        if a == "upload":
            return c.packages_upload(api, out, args.file, args.timeout, check=not args.no_local_check)
        if a == "list":
            filters = {"app": args.app, "model": args.model, "version": args.app_version, "state": args.state}
            return c.packages_list(api, out, filters, args.limit)
        upload_id = refs.resolve(api, args.package)
        return c.packages_show(api, out, upload_id) if a == "show" else c.packages_retire(api, out, upload_id)
    if a == "create":
        if bool(args.devices) == bool(args.model):
            raise c.UsageError("give either --device EPN (one or more) or --model M")
        package = refs.resolve(api, args.package, args.model)
        fallback = refs.resolve(api, args.fallback, args.model) if args.fallback else None
        body = c.job_body(package, args.devices, args.model, args.mode, args.block_size, args.window,
                          args.stall_seconds, args.total_seconds, args.all_or_nothing, args.continuous, fallback,
                          c.wave_spec(args.wave_size, args.wave_percent, args.wave_pause, args.wave_interval))
        if args.estimate:
            from cli import estimate  # the cost estimate (POST /jobs?dry_run=true)

            return estimate.jobs_estimate(api, out, body, args.loss)
        if args.loss is not None:
            raise c.UsageError("--loss goes with --estimate")
        return c.jobs_create(api, out, body, args.idempotency_key)
    if a == "list":
        return c.jobs_list(api, out, args.limit)
    if a == "show":
        return c.jobs_show(api, out, args.job_id, args.device)
    if a == "cancel":
        return c.jobs_cancel(api, out, args.job_id)
    return watch(api, out, args.job_id, args.interval, args.timeout)


def run_remote(args: argparse.Namespace, api: ApiClient, out: c.Output) -> int:
    a = args.action
    if a == "list":
        return remote.list_(api, out, args.limit)
    if a == "show":
        return remote.show(api, out, args.command_id)
    if a == "watch":
        return remote.watch(api, out, args.command_id, args.interval, args.timeout)
    if a == "send":
        envelope = remote.build_envelope(args.key, args.type, args.devices, args.model, script=args.script,
                                         app=args.app, max_bytes=args.max_bytes, timeout=args.timeout_seconds,
                                         expires_in=args.expires_in)
        return remote.send(api, out, envelope, args.wait, args.wait_timeout)
    envelope = remote.build_envelope(args.key, a, [args.epn], None, timeout=args.timeout_seconds,
                                     expires_in=args.expires_in)
    return remote.send(api, out, envelope, True, args.wait_timeout)


def error_line(err: CliError, as_json: bool) -> str:
    """The one line an error prints on stderr: text, or {"error": {"code", "message", "field"}}."""
    if not as_json:
        return f"error: {err}"
    code = (err.error if isinstance(err, ApiError) else None) or type(err).__name__
    field = err.field if isinstance(err, ApiError) else None
    return json.dumps({"error": {"code": code, "message": str(err), "field": field,
                                 "status": err.status if isinstance(err, ApiError) else None}}, sort_keys=True)


def main(argv: Sequence[str] | None = None, out: c.Output | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        out = out or c.Output()
        out.json = bool(args.json)
        target = resolve(args.api, args.token, args.stack_dir, os.environ if environ is None else environ)
        api = ApiClient(with_auth(target, args.auth or "auto", args.profile, args.region))
        return run(args, api, out)
    except CliError as err:
        print(error_line(err, as_json), file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
