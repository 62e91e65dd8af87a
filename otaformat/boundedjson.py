"""Bounded JSON decoding for untrusted bytes: size and nesting depth are checked before parsing.

`check_bounds` refuses a document that is too big or nests deeper than a limit, with one linear scan
that uses no recursion (brackets inside strings do not count), so hostile input such as a 10 KB
array nested 5,000 deep is refused before the recursive parser ever sees it. `loads` is that check
followed by a strict parse: no NaN/Infinity, no duplicate keys. Every failure is a MalformedError;
nothing else escapes (no RecursionError, no UnicodeDecodeError).

It does not validate schemas (the decoders in `messages` and `wire` do) and does no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import MalformedError

# The characters that matter to nesting: brackets, and the quotes and backslashes that delimit strings.
_SPECIAL = re.compile(r'[\[\]{}"\\]')


def nesting_depth(text: str, limit: int) -> int:
    """Deepest bracket nesting of `text` outside strings, counting no further than `limit` + 1.

    One pass over the special characters only, with no backtracking and no recursion: linear in the
    length of `text` whatever it holds (unterminated strings and stray backslashes included)."""
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for match in _SPECIAL.finditer(text):
        at = match.start()
        if at == escaped_at:
            continue
        char = text[at]
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def as_text(data: bytes | bytearray | str, max_bytes: int) -> str:
    """`data` as text, refused if longer than `max_bytes` or (for bytes) not UTF-8."""
    if len(data) > max_bytes:
        raise MalformedError(f"JSON document of {len(data)} bytes exceeds the limit of {max_bytes}")
    if isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as err:
        raise MalformedError("JSON document is not valid UTF-8") from err


def check_bounds(data: bytes | bytearray | str, *, max_bytes: int, max_depth: int) -> str:
    """The document as text once it is within `max_bytes` and nests at most `max_depth` deep."""
    text = as_text(data, max_bytes)
    if nesting_depth(text, max_depth) > max_depth:
        raise MalformedError(f"JSON nesting deeper than {max_depth}")
    return text


def _reject_constant(name: str) -> Any:
    raise MalformedError(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key in out:
            raise MalformedError(f"duplicate JSON key {key!r}")
        out[key] = val
    return out


def loads(data: bytes | bytearray | str, *, max_bytes: int, max_depth: int) -> Any:
    """Parse untrusted JSON: bounded first (size, depth), then strict; raises only MalformedError."""
    text = check_bounds(data, max_bytes=max_bytes, max_depth=max_depth)
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except MalformedError:
        raise
    except (ValueError, RecursionError) as err:  # RecursionError cannot happen after the scan; kept as a guard
        raise MalformedError(f"invalid JSON: {str(err)[:200]}") from err
