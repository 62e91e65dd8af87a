"""`ota-pack`: the package creator's command line (argparse). `main(argv)` returns the exit code.

Exit codes: 0 success, 1 verification failed / package rejected, 2 usage or input error. Every error is
one line on stderr; no tracebacks for bad input. The commands call `otaformat` for all format work and
`packager.files` for I/O; `packager.inspect` renders untrusted manifests. Private keys are only read
from the --key file and never printed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import NoReturn, TextIO

from otaformat.build import BuildSpec, SourceFile, build_delta, build_full
from otaformat.container import verify_package
from otaformat.delta import make_delta
from otaformat.errors import FormatError
from otaformat.manifest import COMPRESSIONS, DELTA_ENCODINGS, KINDS, SCRIPT_ROLES, format_timestamp, parse_timestamp
from otaformat.signing import generate_key, public_key_pem
from otaformat.verdict import Verdict, judge, trusted_keys

from . import files, mcuboot
from .inspect import describe
from .progress import Progress

PROG = "ota-pack"
DEFAULT_EXPIRY_DAYS = 365
MAX_DAYS = 36_500


class UsageError(Exception):
    """Bad arguments or unusable input: exit 2 with one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + error
        raise UsageError(f"{message} (see {self.prog} --help)")


def _parse_time(text: str, what: str) -> datetime:
    """A UTC timestamp like 2026-01-31T12:00:00Z, or seconds since the epoch."""
    if text.isdigit():
        try:
            return datetime.fromtimestamp(int(text), tz=UTC)
        except (OverflowError, OSError, ValueError) as err:
            raise UsageError(f"{what} {text} is out of range") from err
    try:
        return parse_timestamp(text)
    except FormatError as err:
        raise UsageError(f"{what}: {err.reason}") from err


def _created(arg: str | None) -> datetime:
    if arg:
        return _parse_time(arg, "--created")
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return _parse_time(epoch.strip(), "SOURCE_DATE_EPOCH")
    return datetime.now(UTC).replace(microsecond=0)


def _expires(arg: str | None, created: datetime) -> str:
    if arg is None or arg.isdigit():
        days = DEFAULT_EXPIRY_DAYS if arg is None else int(arg)
        if not 1 <= days <= MAX_DAYS:
            raise UsageError(f"--expires {days} days must be within 1..{MAX_DAYS}")
        try:
            return format_timestamp(created + timedelta(days=days))
        except OverflowError as err:
            raise UsageError(f"--expires {days} days after {format_timestamp(created)} is out of range") from err
    return format_timestamp(_parse_time(arg, "--expires"))


def _out_path(out: str, package_id: str) -> Path:
    path = Path(out)
    return path / f"{package_id}.otapkg" if path.is_dir() else path


def _trusted(pubkeys: Sequence[str]) -> dict:
    try:
        return trusted_keys(files.read_public_pem(p) for p in pubkeys)
    except FormatError as err:
        raise UsageError(f"--pubkey: {err.reason}") from err


def cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    kid = files.write_keypair(args.out, args.name, generate_key(), force=args.force)
    print(f"key id {kid}: wrote {Path(args.out) / (args.name + '.key')} (private, 0600) "
          f"and {Path(args.out) / (args.name + '.pub')}", file=out)
    return 0


def cmd_build(args: argparse.Namespace, out: TextIO) -> int:
    if bool(args.source) == bool(args.firmware):
        raise UsageError("give either a SOURCE directory or --firmware IMAGE")
    scripts = []
    for role in SCRIPT_ROLES:
        path = getattr(args, role.replace("-", "_"))
        if path:
            scripts.append((role, files.read_bounded(path, files.MAX_SCRIPT_BYTES, f"--{role} script")))
    if args.mcuboot and not args.firmware:
        raise UsageError("--mcuboot needs --firmware IMAGE")
    if args.mcuboot_key and not args.mcuboot:
        raise UsageError("--mcuboot-key needs --mcuboot")
    if args.firmware:
        if scripts:
            raise UsageError("a --firmware package cannot carry install scripts")
        sources = [SourceFile("image.bin", files.read_bounded(args.firmware, files.MAX_PAYLOAD, "firmware image"))]
        kind = args.kind or "firmware"
    else:
        sources = files.read_tree(args.source)
        kind = args.kind or "app"
    compression = args.compression or "zstd"
    if args.mcuboot:
        compression = _check_mcuboot(args, sources[0].data, kind)
    created = _created(args.created)

    def build(labels: tuple[tuple[str, str], ...]) -> bytes:
        spec = BuildSpec(
            app=args.app, version=args.version, models=tuple(args.model), created=format_timestamp(created),
            expires=_expires(args.expires, created), kind=kind, compression=compression,
            min_agent_version=args.min_agent_version, scripts=tuple(scripts), labels=labels,
        )
        try:
            return build_full(spec, sources, key)
        except FormatError as err:
            raise UsageError(err.reason) from err

    key = files.read_private_key(args.key)
    labels = tuple(_labels(args.label))
    if args.mcuboot:
        try:
            package = mcuboot.build_aligned(build, labels)
        except mcuboot.ImageError as err:
            raise UsageError(f"--mcuboot: {err}") from err
    else:
        with Progress(f"building {args.app} {args.version}", fractions=False):
            package = build(labels)
    return _write(args.out, f"{args.app}-{args.version}", package, out)


def _check_mcuboot(args: argparse.Namespace, image: bytes, kind: str) -> str:
    """Check an MCUboot image for `--mcuboot`; returns the compression to use (always none)."""
    if args.compression not in (None, "none"):
        raise UsageError("--mcuboot packages are not compressed: the payload goes to the slot as is")
    if kind != "firmware":
        raise UsageError("--mcuboot packages are of kind firmware")
    try:
        parsed = mcuboot.parse_image(image)
        if args.mcuboot_key:
            mcuboot.check_signature(image, parsed, files.read_bounded(args.mcuboot_key, 65536, "--mcuboot-key"))
    except mcuboot.ImageError as err:
        raise UsageError(f"--mcuboot {args.firmware}: {err}") from err
    if parsed.version != args.version:
        raise UsageError(f"--version {args.version} differs from the image's version {parsed.version} "
                         "(imgtool sign --version)")
    return "none"


def _labels(items: Sequence[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item[:40]!r} must look like KEY=VALUE")
        pairs.append((key, value))
    return sorted(pairs)


def _write(dest: str, package_id: str, package: bytes, out: TextIO) -> int:
    path = _out_path(dest, package_id)
    files.write_atomic(path, package)
    print(f"built {package_id}: {path} ({len(package)} bytes, sha256 {hashlib.sha256(package).hexdigest()})", file=out)
    return 0


def cmd_delta(args: argparse.Namespace, out: TextIO) -> int:
    key = files.read_private_key(args.key)
    trusted = _trusted(args.pubkey) if args.pubkey else trusted_keys([public_key_pem(key.public_key())])
    verified = []
    for flag, path in (("--from", args.from_), ("--to", args.to)):
        try:  # signature and hashes only: an expired base is still a valid base
            verified.append(verify_package(files.read_package(path), trusted))
        except FormatError as err:
            raise UsageError(f"{flag} {path} does not verify: {err.code}: {err.reason}") from err
    base, target = verified
    created = _created(args.created)
    try:
        with Progress(f"delta {base.manifest.version}->{target.manifest.version}") as progress:
            package = build_delta(
                base, target, key, created=format_timestamp(created),
                expires=_expires(args.expires, created) if args.expires else None,
                encodings=tuple(args.encoding) if args.encoding else None, compression=args.compression,
                differ=functools.partial(make_delta, progress=progress),
            )
    except FormatError as err:
        raise UsageError(err.reason) from err
    old, new = base.manifest, target.manifest
    return _write(args.out, f"{new.app}-{old.version}-to-{new.version}", package, out)


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    trusted = _trusted(args.pubkey)
    now = _parse_time(args.now, "--now") if args.now else datetime.now(UTC)
    base_content = None
    if args.base:
        base = judge(files.read_package(args.base), trusted, now=now, model=args.model)
        if not base.accepted:
            print(f"REJECTED: base {args.base} does not verify: {base.code}: {base.reason}", file=out)
            return 1
        if base.manifest is not None and base.manifest.is_delta:
            raise UsageError(f"--base {args.base} is a delta package; give the full base package")
        base_content = base.content
    verdict = judge(files.read_package(args.package), trusted, now=now, model=args.model, base_content=base_content)
    print(_verdict_line(verdict, applied=base_content is not None), file=out)
    return 0 if verdict.accepted else 1


def _verdict_line(verdict: Verdict, applied: bool) -> str:
    if not verdict.accepted:
        return f"REJECTED: {verdict.code}: {verdict.reason}"
    m = verdict.manifest
    assert m is not None
    text = f"OK {m.package_id} app={m.app} version={m.version} kind={m.kind} key={verdict.key_id} expires={m.expires}"
    if m.delta:
        text += f" delta={m.delta.base_version}->{m.version} encoding={m.delta.encoding}"
        text += " result=verified" if applied else " result=not-applied (pass --base to check the result)"
    return text


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    text, ok = describe(files.read_package(args.package), as_json=args.json)
    print(text, file=out)
    return 0 if ok else 2


def _tool_version() -> str:
    """The installed distribution's version (as `ota --version` prints it)."""
    try:
        return metadata.version("ota-service")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Build, sign, delta, verify and inspect OTA packages.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_tool_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("keygen", help="make an ECDSA P-256 signing key pair")
    p.add_argument("--out", required=True, help="directory for NAME.key (0600) and NAME.pub")
    p.add_argument("--name", default="publisher", help="file name stem (default: publisher)")
    p.add_argument("--force", action="store_true", help="replace existing key files")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("build", help="build a signed full package from a directory or a firmware image")
    p.add_argument("source", nargs="?", help="directory whose files go into the package")
    p.add_argument("--firmware", metavar="IMAGE", help="single firmware image (kind firmware, file image.bin)")
    for role in SCRIPT_ROLES:
        p.add_argument(f"--{role}", metavar="FILE", help=f"{role} script, stored as scripts/{role}")
    p.add_argument("--app", required=True)
    p.add_argument("--version", required=True, help="MAJOR.MINOR.PATCH")
    p.add_argument("--kind", choices=KINDS, help="default: app, or firmware with --firmware")
    p.add_argument("--model", action="append", required=True, help="target model number (repeatable)")
    p.add_argument("--expires", help=f"days after --created (default {DEFAULT_EXPIRY_DAYS}) or a UTC timestamp")
    p.add_argument("--created", help="UTC timestamp or epoch seconds (default: $SOURCE_DATE_EPOCH, else now)")
    p.add_argument("--min-agent-version", default="1.0.0")
    p.add_argument("--compression", choices=COMPRESSIONS, help="default zstd (level 19); none with --mcuboot")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="free-form label (repeatable)")
    p.add_argument("--mcuboot", action="store_true",
                   help="--firmware IMAGE is an imgtool-signed MCUboot image for the MCU library (docs/mcu.md)")
    p.add_argument("--mcuboot-key", metavar="PEM", help="with --mcuboot: check the image signature with this key")
    p.add_argument("--key", required=True, help="private key PEM (from keygen)")
    p.add_argument("--out", required=True, help="output file, or a directory for PACKAGE_ID.otapkg")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("delta", help="make a signed delta package between two full packages of one app")
    p.add_argument("--from", dest="from_", required=True, metavar="OLD", help="base full package")
    p.add_argument("--to", required=True, metavar="NEW", help="target full package")
    p.add_argument("--key", required=True, help="private key PEM")
    p.add_argument("--pubkey", action="append", help="keys trusted for OLD/NEW (default: the --key's public key)")
    p.add_argument("--encoding", action="append", choices=DELTA_ENCODINGS,
                   help="build this encoding (repeatable; the smallest is kept); default covers-xz")
    p.add_argument("--compression", choices=COMPRESSIONS, default="none", help="on top of the patch (default none)")
    p.add_argument("--created", help="UTC timestamp or epoch seconds (default: $SOURCE_DATE_EPOCH, else now)")
    p.add_argument("--expires", help="days after --created or a UTC timestamp (default: the target's expiry)")
    p.add_argument("--out", required=True, help="output file, or a directory")
    p.set_defaults(func=cmd_delta)

    p = sub.add_parser("verify", help="verify a package fully (signature, hashes, policy, delta result)")
    p.add_argument("package")
    p.add_argument("--pubkey", action="append", required=True, help="trusted public key PEM (repeatable)")
    p.add_argument("--model", help="device model to check the package against")
    p.add_argument("--base", metavar="OLDPKG", help="base full package: apply a delta and check its result")
    p.add_argument("--now", help="check expiry at this UTC timestamp instead of now")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("inspect", help="show a package's manifest WITHOUT verifying it")
    p.add_argument("package")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args, out))
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    except (UsageError, files.InputError) as error:
        print(f"{PROG}: error: {error}", file=err)
        return 2
    except FormatError as error:
        print(f"{PROG}: error: {error.code}: {error.reason}", file=err)
        return 2
    except (OSError, ValueError, OverflowError, MemoryError) as error:  # last line of defence: still one line
        print(f"{PROG}: error: {type(error).__name__}: {str(error)[:200]}", file=err)
        return 2
