"""Canonical JSON: sorted keys, no insignificant whitespace, UTF-8, and a strict bounded parser.

Canonical bytes are what gets signed. The parser refuses NaN/Infinity, duplicate keys, deep nesting
and oversized input before building anything big. No I/O.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import MalformedError

MAX_JSON_BYTES = 1 << 20
MAX_DEPTH = 16


def canonical_json(value: Any) -> bytes:
    """Encode `value` canonically; raises MalformedError for NaN, Infinity or non-JSON types."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise MalformedError(f"value cannot be encoded as canonical JSON: {err}") from err
    return text.encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise MalformedError(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key in out:
            raise MalformedError(f"duplicate JSON key {key!r}")
        out[key] = val
    return out


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()] or [level + 1])
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value] or [level + 1])
    return level


def parse_json(data: bytes | str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse JSON strictly: size-bounded, no NaN/Infinity, no duplicate keys, nesting <= MAX_DEPTH."""
    if len(data) > max_bytes:
        raise MalformedError(f"JSON document of {len(data)} bytes exceeds the limit of {max_bytes}")
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise MalformedError("JSON document is not valid UTF-8") from err
    # A cheap pre-check stops deep nesting before the recursive parser sees it.
    depth = 0
    for ch in data:
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise MalformedError(f"JSON nesting deeper than {MAX_DEPTH}")
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(data, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except MalformedError:
        raise
    except (ValueError, RecursionError) as err:
        raise MalformedError(f"invalid JSON: {err}") from err
