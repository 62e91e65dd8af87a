"""Identifiers that end up in MQTT topics, S3 keys, table keys and file paths. No I/O.

An EPN ID (a device's endpoint id and MQTT identity), a model number and an app name are validated
here and nowhere else (THREATS 17).
"""

from __future__ import annotations

import re

from .errors import MalformedError

EPN_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MODEL_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
APP_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

_EPN = re.compile(EPN_PATTERN)
_MODEL = re.compile(MODEL_PATTERN)
_APP = re.compile(APP_PATTERN)


def _check(kind: str, pattern: re.Pattern[str], value: object) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value)[:80]
        raise MalformedError(f"{kind} {shown} must match {pattern.pattern}")
    return value


def check_epn(value: object) -> str:
    """Return `value` if it is a valid EPN ID, else raise MalformedError."""
    return _check("EPN ID", _EPN, value)


def check_model(value: object) -> str:
    return _check("model", _MODEL, value)


def check_app(value: object) -> str:
    return _check("app name", _APP, value)


def is_epn(value: object) -> bool:
    return isinstance(value, str) and bool(_EPN.fullmatch(value))
