"""Canonical JSON: sorted keys, no insignificant whitespace, UTF-8, and a strict bounded parser.

Canonical bytes are what gets signed. The parser refuses NaN/Infinity, duplicate keys, deep nesting
and oversized input before building anything big. No I/O.
"""

from __future__ import annotations

import json
from typing import Any

from . import boundedjson
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


def parse_json(data: bytes | str, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON strictly: size-bounded, no NaN/Infinity, no duplicate keys, nesting <= max_depth.

    Size and depth are checked before parsing, without recursion (see `boundedjson`)."""
    return boundedjson.loads(data, max_bytes=max_bytes, max_depth=max_depth)
