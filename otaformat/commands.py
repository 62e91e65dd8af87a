"""Signed remote commands (wire protocol v1, topics `ota/{epn}/cmd` and `ota/{epn}/cmd/result`). No I/O.

A command is signed by a publisher key like a manifest: ECDSA P-256 / SHA-256 over the canonical JSON
of the `command` object, in an envelope {"command": {...}, "signatures": [...]}. The operator signs on
their own machine (`ota commands send --key`); the cloud stores and forwards the envelope unchanged and
never holds a private key. `check_command` is the device's whole decision, pure (the caller passes the
clock, its identity, its allow-list and the ids it has already run): signature by a trusted key, schema,
not yet expired, lifetime bounded, addressed to this device or its model, type allowed, not replayed.
`CommandResult` is what the device reports back, with its output bounded and a truncation flag.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .canonical import canonical_json, parse_json
from .errors import FormatError, MalformedError, VerificationError
from .ids import check_app, check_epn, check_model
from .manifest import parse_timestamp
from .signing import ALGORITHM, key_id, verify_signatures
from .wire import MAX_CONTROL_MESSAGE, MAX_DEVICE_JSON_DEPTH

TYPES = ("reboot", "restart-agent", "restart-app", "run-script", "collect-logs")
RESULT_STATES = ("DELIVERED", "RUNNING", "SUCCEEDED", "FAILED", "REJECTED")
MAX_SCRIPT = 8192  # bytes of an inline script (the whole message stays under MAX_CONTROL_MESSAGE)
MAX_OUTPUT = 8192  # bytes of output a result carries
MAX_TARGET_DEVICES = 100  # a signed command names at most this many devices (or one model)
MAX_LIFETIME = timedelta(days=7)  # expires - issued; bounds how long a device must remember an id
MAX_TIMEOUT = 3600
MAX_REASON = 1024
TRUNCATED = "\n[... output truncated: {} bytes dropped ...]\n"
_COMMAND_ID = re.compile(r"^cmd-[0-9a-f]{8,40}$")
_FIELDS = {"id", "type", "target", "args", "script", "timeout", "issued", "expires"}


@dataclass(frozen=True)
class Command:
    command_id: str
    type: str
    issued: str  # UTC "YYYY-MM-DDTHH:MM:SSZ"
    expires: str
    devices: tuple[str, ...] = ()  # exactly one of devices / model is set
    model: str | None = None
    args: tuple[tuple[str, str], ...] = ()  # restart-app: app; collect-logs: max_bytes (decimal)
    script: str | None = None  # run-script only
    timeout: int = 60  # seconds the device lets it run (scripts, hooks)

    def to_dict(self) -> dict[str, Any]:
        target: dict[str, Any] = {"model": self.model} if self.model is not None else {"devices": list(self.devices)}
        return {"id": self.command_id, "type": self.type, "target": target, "args": dict(self.args),
                "script": self.script, "timeout": self.timeout, "issued": self.issued, "expires": self.expires}

    def arg(self, name: str) -> str | None:
        return dict(self.args).get(name)

    def addressed_to(self, epn: str, model: str) -> bool:
        return epn in self.devices if self.model is None else self.model == model

    @classmethod
    def from_dict(cls, data: object) -> Command:
        """Validate the schema; MalformedError names the first bad field."""
        if not isinstance(data, dict):
            raise MalformedError("command must be a JSON object")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise MalformedError(f"command has unknown field(s): {', '.join(unknown)[:200]}")
        command_id = data.get("id")
        if not isinstance(command_id, str) or not _COMMAND_ID.fullmatch(command_id):
            raise MalformedError("field 'id' must match ^cmd-[0-9a-f]{8,40}$")
        kind = data.get("type")
        if kind not in TYPES:
            raise MalformedError(f"field 'type' must be one of {', '.join(TYPES)}")
        target = data.get("target")
        if not isinstance(target, dict) or len(target) != 1 or not set(target) <= {"devices", "model"}:
            raise MalformedError("field 'target' must be {\"devices\": [epn, ...]} or {\"model\": \"M\"}")
        devices: tuple[str, ...] = ()
        model = None
        if "devices" in target:
            listed = target["devices"]
            if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_TARGET_DEVICES:
                raise MalformedError(f"field 'target.devices' must list 1..{MAX_TARGET_DEVICES} EPN IDs")
            devices = tuple(sorted({check_epn(d) for d in listed}))
        else:
            model = check_model(target["model"])
        args = data.get("args", {})
        if not isinstance(args, dict) or len(args) > 8 or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 32 and len(v) <= 256 for k, v in args.items()):
            raise MalformedError("field 'args' must be an object of at most 8 short string values")
        _check_args(kind, args)
        script = data.get("script")
        if kind == "run-script":
            if not isinstance(script, str) or not script or len(script.encode()) > MAX_SCRIPT:
                raise MalformedError(f"field 'script' must hold the script (1..{MAX_SCRIPT} bytes) for run-script")
        elif script is not None:
            raise MalformedError("field 'script' is only allowed for run-script")
        timeout = data.get("timeout", 60)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT:
            raise MalformedError(f"field 'timeout' must be an integer in 1..{MAX_TIMEOUT}")
        issued, expires = data.get("issued"), data.get("expires")
        if not isinstance(issued, str) or not isinstance(expires, str):
            raise MalformedError("fields 'issued' and 'expires' must be UTC timestamps like 2026-01-31T12:00:00Z")
        start, end = parse_timestamp(issued), parse_timestamp(expires)
        if not start < end <= start + MAX_LIFETIME:
            raise MalformedError(f"field 'expires' must be after 'issued' and at most {MAX_LIFETIME.days} days later")
        return cls(command_id=command_id, type=kind, issued=str(issued), expires=str(expires), devices=devices,
                   model=model, args=tuple(sorted(args.items())), script=script, timeout=timeout)


def _check_args(kind: str, args: dict[str, str]) -> None:
    allowed = {"restart-app": {"app"}, "collect-logs": {"max_bytes"}}.get(kind, set())
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise MalformedError(f"field 'args.{unknown[0]}' is not an argument of {kind}")
    if kind == "restart-app":
        check_app(args.get("app"))
    if "max_bytes" in args and (not args["max_bytes"].isdigit() or not 1 <= int(args["max_bytes"]) <= MAX_OUTPUT):
        raise MalformedError(f"field 'args.max_bytes' must be a decimal integer in 1..{MAX_OUTPUT}")


def sign_command(command: Command, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    body = command.to_dict()
    Command.from_dict(body)  # never sign what a device would refuse as malformed
    signature = key.sign(canonical_json(body), ec.ECDSA(hashes.SHA256()))
    return {"command": body, "signatures": [
        {"alg": ALGORITHM, "keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}]}


def verify_signature(envelope: object, trusted: Mapping[str, ec.EllipticCurvePublicKey]) -> Command:
    """One signature by a trusted key over the canonical command, then the schema. VerificationError
    codes: malformed, unsigned, untrusted-key, bad-signature."""
    if not isinstance(envelope, dict) or set(envelope) != {"command", "signatures"}:
        raise VerificationError("envelope must be an object with exactly 'command' and 'signatures'", code="malformed")
    verify_signatures(envelope["command"], envelope["signatures"], trusted, "command", "command")
    try:
        return Command.from_dict(envelope["command"])
    except FormatError as err:
        raise VerificationError(f"signed command is invalid: {err.reason}", code="malformed") from err


def check_command(
    envelope: object, trusted: Mapping[str, ec.EllipticCurvePublicKey], *, now: datetime, epn: str, model: str,
    allowed: Collection[str], seen: Collection[str],
) -> Command:
    """The device's decision before anything runs. VerificationError codes as `verify_signature`, plus
    expired, not-yet-valid, wrong-target, not-allowed, replayed."""
    command = verify_signature(envelope, trusted)
    if parse_timestamp(command.expires) <= now:
        raise VerificationError(f"command expired at {command.expires}", code="expired")
    if parse_timestamp(command.issued) > now + timedelta(minutes=5):
        raise VerificationError(f"command is issued in the future ({command.issued})", code="not-yet-valid")
    if not command.addressed_to(epn, model):
        where = f"model {command.model}" if command.model else f"device(s) {', '.join(command.devices)[:200]}"
        raise VerificationError(f"command is for {where}, not {epn} ({model})", code="wrong-target")
    if command.type not in allowed:
        raise VerificationError(f"command type {command.type} is not allowed by this device's configuration",
                                code="not-allowed")
    if command.command_id in seen:
        raise VerificationError(f"command {command.command_id} was already run (replay)", code="replayed")
    return command


# -- messages ----------------------------------------------------------------------------------------


def encode_command_message(envelope: Mapping[str, Any]) -> bytes:
    """The cloud->device message on ota/{epn}/cmd."""
    data = canonical_json({"v": 1, "type": "command", "envelope": dict(envelope)})
    if len(data) > MAX_CONTROL_MESSAGE:
        raise MalformedError(f"command message is {len(data)} bytes, more than {MAX_CONTROL_MESSAGE}")
    return data


def decode_command_message(data: bytes) -> dict[str, Any]:
    """The envelope a command message carries (not verified: see check_command)."""
    d = parse_json(data, max_bytes=MAX_CONTROL_MESSAGE, max_depth=8)
    if not isinstance(d, dict) or d.get("v") != 1 or d.get("type") != "command" or set(d) != {"v", "type", "envelope"}:
        raise MalformedError("command message must be {\"v\": 1, \"type\": \"command\", \"envelope\": {...}}")
    envelope = d["envelope"]
    if not isinstance(envelope, dict):
        raise MalformedError("field 'envelope' must be an object")
    return envelope


@dataclass(frozen=True)
class CommandResult:
    command_id: str
    state: str  # RESULT_STATES
    seq: int = 0
    exit_code: int | None = None
    reason: str | None = None
    output: str | None = None
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"v": 1, "type": "cmd-result", "id": self.command_id, "state": self.state,
                                "seq": self.seq, "truncated": self.truncated}
        for key, value in (("exit_code", self.exit_code), ("reason", self.reason), ("output", self.output)):
            if value is not None:
                body[key] = value
        return body


def encode_result(result: CommandResult) -> bytes:
    return canonical_json(result.to_dict())


def decode_result(data: bytes) -> CommandResult:
    """A device's cmd/result message: size and depth bounded before parsing, every field checked."""
    d = parse_json(data, max_bytes=MAX_CONTROL_MESSAGE, max_depth=MAX_DEVICE_JSON_DEPTH)
    if not isinstance(d, dict) or d.get("v") != 1 or d.get("type") != "cmd-result":
        raise MalformedError("result must be a JSON object with \"v\": 1 and \"type\": \"cmd-result\"")
    unknown = sorted(set(d) - {"v", "type", "id", "state", "seq", "exit_code", "reason", "output", "truncated"})
    if unknown:
        raise MalformedError(f"result has unknown field(s): {', '.join(unknown)[:100]}")
    command_id = d.get("id")
    if not isinstance(command_id, str) or not _COMMAND_ID.fullmatch(command_id):
        raise MalformedError("field 'id' must be a command id")
    state = d.get("state")
    if state not in RESULT_STATES:
        raise MalformedError(f"field 'state' must be one of {', '.join(RESULT_STATES)}")
    seq, code = d.get("seq"), d.get("exit_code")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 2**53:
        raise MalformedError("field 'seq' must be an integer in 0..2^53")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int) or not -255 <= code <= 255):
        raise MalformedError("field 'exit_code' must be an integer in -255..255")
    reason, output, truncated = d.get("reason"), d.get("output"), d.get("truncated", False)
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise MalformedError(f"field 'reason' must be a string of at most {MAX_REASON} characters")
    if output is not None and (not isinstance(output, str) or len(output.encode()) > MAX_OUTPUT + 128):
        raise MalformedError(f"field 'output' must be a string of at most {MAX_OUTPUT} bytes")
    if not isinstance(truncated, bool):
        raise MalformedError("field 'truncated' must be a boolean")
    return CommandResult(command_id, state, seq, code, reason, output, truncated)


def cut_output(head: bytes, tail: bytes, size: int, limit: int) -> str:
    """Output of `size` bytes kept within `limit`: its head and tail around a note saying how much was cut."""
    keep = max(0, (limit - len(TRUNCATED.format(size))) // 2)
    kept = head[:keep] + TRUNCATED.format(size - 2 * keep).encode() + (tail[len(tail) - keep:] if keep else b"")
    return kept.decode("utf-8", errors="replace")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

