"""JSON Schemas of every request the HTTP API accepts: path ids, query parameters and bodies.

These describe exactly what the validators in services/ and api/http.py accept, so a client generated
from docs/openapi.json never sends a request the server refuses as malformed (400); a schema-driven
test (tests/functional/test_schemathesis.py) holds the two together. Two string formats need a
generator that knows the semantics: `pem-public-key` (an ECDSA P-256 SubjectPublicKeyInfo in PEM) and
`pem-csr` (a PEM PKCS#10 request with a valid self-signature and an EC or >= 2048-bit RSA key); one
cannot be generated at all: `page-cursor`, valid only as given out by the same listing (400 otherwise).
Does not: validate anything at run time.
"""

from __future__ import annotations

from typing import Any

from otaformat import commands as oc
from otaformat.ids import APP_PATTERN, EPN_PATTERN, MODEL_PATTERN
from otaformat.wire import MAX_BLOCK_SIZE, MIN_BLOCK_SIZE

from .. import prices as price_tables
from ..adapters.paging import MAX_CURSOR
from ..domain.models import PACKAGE_STATES
from ..domain.retries import MAX_RETRIES
from ..domain.waves import MAX_DELAY, MAX_WAVE_SIZE, MAX_WAVES
from ..services.abort import DEFAULT_ABORT_MIN_EXECUTED, DEFAULT_ABORT_PERCENT
from ..services.devices import MAX_APPS, TOKEN_TTL
from ..services.jobs import DEFAULT_BLOCK_SIZE, DEFAULT_WINDOW, MAX_TARGETS, MAX_WINDOW
from ..settings import DEFAULT_MAX_PACKAGE_BYTES
from .http import DEFAULT_LIMIT, MAX_LIMIT

VERSION_PATTERN = r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


def _string(pattern: str, description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, "description": description}


def _integer(low: int, high: int, description: str, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high, "description": description}
    if default is not None:
        schema["default"] = default
    return schema


def _object(properties: dict[str, Any], required: tuple[str, ...] = (), *, extra: bool = False,
            **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": extra, **more}
    if required:
        schema["required"] = list(required)
    return schema


EPN = _string(EPN_PATTERN, "device EPN ID")
MODEL = _string(MODEL_PATTERN, "device model number")
VERSION = _string(VERSION_PATTERN, "MAJOR.MINOR.PATCH, each field 0..999999")

PATH: dict[str, dict[str, Any]] = {
    "epn": EPN,
    "job_id": {"type": "string", "minLength": 1, "maxLength": 64, "description": "job id (job-<20 hex>)",
               "example": "job-0123456789abcdef0123"},
    "upload_id": {"type": "string", "minLength": 1, "maxLength": 64,
                  "description": "package upload id: up-<20 hex>, or up-<20 hex>.<16 hex> for a staging object "
                                 "replaced after its decision (judged as its own upload)",
                  "example": "up-0123456789abcdef0123"},
    "command_id": {"type": "string", "pattern": r"^cmd-[0-9a-f]{8,40}$", "description": "command id (chosen and "
                   "signed by the operator's client)", "example": "cmd-0123456789abcdef"},
    "key_id": {"type": "string", "pattern": "^[0-9a-f]{1,64}$",
               "description": "publisher key id (16 hex: SHA-256 of the DER public key)",
               "example": "0123456789abcdef"},
}

PAGE: dict[str, dict[str, Any]] = {
    "limit": {"type": "string", "pattern": r"^0*([1-9][0-9]{0,2}|1000)$",
              "description": f"items per page, 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})"},
    "cursor": {"type": "string", "format": "page-cursor", "minLength": 1, "maxLength": MAX_CURSOR,
               "description": "opaque: the next_cursor of the previous page of the same listing (else 400)"},
}
QUERY: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("GET", "/devices"): {"model": MODEL, **PAGE},
    ("GET", "/jobs"): PAGE,
    ("GET", "/jobs/{job_id}/executions"): PAGE,
    ("GET", "/devices/{epn}/executions"): PAGE,
    ("GET", "/commands"): PAGE,
    ("GET", "/commands/{command_id}/runs"): PAGE,
    ("GET", "/devices/{epn}/commands"): PAGE,
    ("GET", "/releases"): PAGE,
    ("GET", "/packages"): {**PAGE,
        "app": _string(APP_PATTERN, "only packages of this app"),
        "model": _string(MODEL_PATTERN, "only packages for this model"),
        "version": VERSION,
        "state": {"type": "string", "enum": list(PACKAGE_STATES)},
    },
    ("POST", "/jobs"): {  # services/estimate.py
        "dry_run": {"type": "string", "enum": ["true", "false"], "default": "false",
                    "description": "true: answer 200 with the rollout's cost estimate and create nothing"},
        "loss": {"type": "string", "pattern": r"^(0|0?\.([0-4][0-9]{0,5}|50{0,5}))$", "default": "0",
                 "description": "dry run: expected share of block copies lost on the way, 0..0.5"},
        "prices": {"type": "string", "enum": price_tables.names(), "default": price_tables.DEFAULT,
                   "description": "dry run: the price table (chalicelib/prices)"},
    },
}

_TARGETS = {
    "oneOf": [
        _object({"devices": {"type": "array", "minItems": 1, "maxItems": MAX_TARGETS, "items": EPN}}, ("devices",)),
        _object({"model": MODEL, "continuous": {
            "type": "boolean", "default": False,
            "description": "devices of the model registered while the job is ACTIVE get it too"}}, ("model",)),
    ],
    "description": f"either a list of devices (1..{MAX_TARGETS}) or every registered device of one model",
}

_WAVES = {
    **_object({
        "size": _integer(1, MAX_WAVE_SIZE, "devices per wave"),
        "percent": _integer(1, 100, "percent of the job's eligible targets per wave (rounded up, at least one "
                                    "device); wave 0 starts when the fan-out is done"),
        "pause_seconds": _integer(0, MAX_DELAY, "the next wave starts this long after the previous one finished "
                                                "(every execution terminal) and passed the failure threshold", 0),
        "interval_seconds": _integer(1, MAX_DELAY, "instead of pause_seconds: the next wave starts this long "
                                                   "after the previous one started (if it passed the threshold)"),
    }),
    "allOf": [{"oneOf": [{"required": ["size"]}, {"required": ["percent"]}]},
              {"not": {"required": ["pause_seconds", "interval_seconds"]}}],
    "description": f"staged rollout: waves in target order, at most {MAX_WAVES} (an explicit list needing more "
                   "is 400; for a model the last wave takes the rest); the failure threshold counts per wave",
}

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/devices"): _object({
        "epn": EPN, "model": MODEL,
        "token_ttl_seconds": _integer(60, 30 * 86400, "lifetime of the one-time registration token", TOKEN_TTL),
    }, ("epn", "model")),
    ("POST", "/devices/{epn}/register"): _object({
        "token": {"type": "string", "minLength": 1, "maxLength": 256, "description": "one-time registration token"},
        "csr": {"type": "string", "format": "pem-csr", "maxLength": 16384,
                "description": "PEM PKCS#10 request: valid self-signature, EC or >= 2048-bit RSA key"},
        "agent_version": VERSION,
        "apps": {"type": "object", "maxProperties": MAX_APPS, "propertyNames": {"pattern": APP_PATTERN},
                 "additionalProperties": VERSION, "description": "installed apps: name -> version"},
    }, ("token", "csr", "agent_version"), extra=True,
        description="unknown fields are ignored, so an older service accepts a newer agent"),
    ("POST", "/keys"): _object({
        "public_key": {"type": "string", "format": "pem-public-key", "minLength": 1, "maxLength": 8192,
                       "description": "PEM SubjectPublicKeyInfo of an ECDSA P-256 key"},
        "name": {"type": "string", "minLength": 1, "maxLength": 128},
    }, ("public_key", "name")),
    ("POST", "/packages"): _object({
        "size": _integer(1, DEFAULT_MAX_PACKAGE_BYTES, "exact size in bytes of the package to upload (at most "
                         "the deployment's OTA_MAX_PACKAGE_BYTES)"),
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                   "description": "SHA-256 of the file: if an AVAILABLE package holds these bytes, it is returned "
                                  "(200, `existing`) and nothing is uploaded; else the upload must match it"},
    }, ("size",)),
    ("POST", "/jobs"): _object({
        "package_id": {"type": "string", "minLength": 1, "maxLength": 64,
                       "description": "upload id of an AVAILABLE package (404 if unknown, 409 if not AVAILABLE)"},
        "fallback_package_id": {
            "type": "string", "minLength": 1, "maxLength": 64,
            "description": "delta jobs only (400 otherwise): upload id of an AVAILABLE full package of the same app "
                           "and version as the delta's target, for every targeted model (404 if unknown, 409 if "
                           "not AVAILABLE or not for a targeted model, 400 if a delta or another app or version); "
                           "a device off the delta's base (older version or no app) takes it instead of SKIPPED"},
        "targets": _TARGETS,
        "mode": {"type": "string", "enum": ["block", "url"], "default": "block"},
        "block_size": _integer(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, "bytes per block (block mode)", DEFAULT_BLOCK_SIZE),
        "window": _integer(1, MAX_WINDOW, "unacknowledged blocks in flight per device", DEFAULT_WINDOW),
        "timeouts": _object({
            "stall_seconds": _integer(5, 86400, "no progress for this long: TIMED_OUT", 300),
            "total_seconds": _integer(60, 30 * 86400, "execution deadline", 7 * 86400),
        }),
        "max_retries": _integer(0, MAX_RETRIES, "retries of a failed execution", 0),
        "all_or_nothing": {"type": "boolean", "default": False,
                           "description": "refuse the job (409) if any target cannot take the package, instead "
                                          "of marking it SKIPPED"},
        "abort": _object({
            "failure_threshold_percent": _integer(1, 100, "abort the job past this failure rate",
                                                  DEFAULT_ABORT_PERCENT),
            "min_executed": _integer(1, 100_000, "executions finished before the rate counts",
                                     DEFAULT_ABORT_MIN_EXECUTED),
        }),
        "waves": _WAVES,
    }, ("package_id", "targets")),
}

TIMESTAMP = _string(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", "UTC, like 2026-01-31T12:00:00Z")
COMMAND = _object({
    "id": _string(r"^cmd-[0-9a-f]{8,40}$", "unique id (single use)"),
    "type": {"type": "string", "enum": list(oc.TYPES)},
    "target": {"oneOf": [
        _object({"devices": {"type": "array", "minItems": 1, "maxItems": oc.MAX_TARGET_DEVICES, "items": EPN}},
                ("devices",)),
        _object({"model": MODEL}, ("model",)),
    ]},
    "args": _object({"app": _string(APP_PATTERN, "restart-app: the app"),
                     "max_bytes": _string(r"^[1-9][0-9]{0,3}$", "collect-logs: bytes of log, at most 8192")}),
    "script": {"type": ["string", "null"], "minLength": 1, "maxLength": oc.MAX_SCRIPT,
               "description": "run-script only: the script (sh, or its own #! line)"},
    "timeout": _integer(1, oc.MAX_TIMEOUT, "seconds the device lets it run", 60),
    "issued": TIMESTAMP, "expires": TIMESTAMP,
}, ("id", "type", "target", "issued", "expires"))
BODIES[("POST", "/commands")] = _object({
    "envelope": _object({
        "command": COMMAND,
        "signatures": {"type": "array", "maxItems": 8, "items": _object({
            "alg": {"type": "string", "enum": ["ecdsa-p256-sha256"]},
            "keyid": {"type": "string", "minLength": 1, "maxLength": 64},
            "sig": {"type": "string", "minLength": 1, "maxLength": 256, "description": "base64 DER ECDSA signature"},
        }, ("alg", "keyid", "sig"))},
    }, ("command", "signatures"), description="made by `ota commands send --key` (docs/protocol.md)"),
}, ("envelope",))
BODIES[("POST", "/releases")] = _object({
    "app": _string(APP_PATTERN, "app name"), "version": VERSION, "model": MODEL,
    "channel": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9._-]{0,31}$", "default": "stable",
                "description": "release channel devices follow (agent config [auto] channel)"},
}, ("app", "version", "model"))

FORMATS = ("pem-csr", "pem-public-key", "page-cursor")
