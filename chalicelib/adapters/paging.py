"""Opaque page cursors shared by the repositories: base64url (no padding) of a compact JSON object of
strings that says where the previous page stopped. The adapters decide what goes in it (DynamoDB: the
key attributes of the last item returned; memory: the same sort key); a cursor that does not decode to
the shape its listing expects, or that names another listing (another partition), is refused with
InvalidInput (HTTP 400), so a tampered cursor never reaches DynamoDB as an ExclusiveStartKey.
Does not: sign cursors (a well-formed cursor for the same listing only moves the start of the page).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..domain.errors import InvalidInput
from ..domain.ports import Page

T = TypeVar("T")
MAX_CURSOR = 2048
MODEL_SHARDS = 4  # devices of one model are spread over this many index partitions (MODEL#<model>#<n>)


def model_shard(epn: str) -> int:
    return zlib.crc32(epn.encode()) % MODEL_SHARDS


def encode(position: dict[str, str]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def refused() -> InvalidInput:
    return InvalidInput("query parameter 'cursor' is not a cursor this listing gave out", field="cursor")


def decode(cursor: str, names: set[str], fixed: dict[str, str] | None = None) -> dict[str, str]:
    """The position in `cursor`: exactly the keys `names`, string values, `fixed` ones equal."""
    bad = refused()
    if not isinstance(cursor, str) or not 1 <= len(cursor) <= MAX_CURSOR:
        raise bad
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as err:
        raise bad from err
    if not isinstance(value, dict) or set(value) != names or not all(isinstance(v, str) for v in value.values()):
        raise bad
    if any(value.get(k) != v for k, v in (fixed or {}).items()):
        raise bad
    return value


def every(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a paged listing, following next_cursor (for internal code that needs them all)."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
