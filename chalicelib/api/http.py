"""Request helpers: strict JSON bodies (otaformat.canonical.parse_json: bounded, no NaN, no duplicate
keys), path-id checks and JSON responses. Does not: business rules."""

from __future__ import annotations

import re
from typing import Any

from chalice import Response
from chalice.app import Request

from otaformat.canonical import parse_json
from otaformat.errors import FormatError
from otaformat.ids import is_epn

from ..domain.errors import InvalidInput

MAX_BODY = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,9}")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def body(request: Request, *, required: bool = True, max_bytes: int = MAX_BODY) -> dict[str, Any]:
    raw = request.raw_body or b""
    if not raw.strip():
        if required:
            raise InvalidInput("a JSON object body is required", field="body")
        return {}
    if len(raw) > max_bytes:
        raise InvalidInput(f"body is larger than {max_bytes} bytes", field="body")
    try:
        value = parse_json(raw, max_bytes=max_bytes)
    except FormatError as err:
        raise InvalidInput(f"body is not valid JSON: {err.reason}", field="body") from err
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object", field="body")
    return value


def epn_path(value: str) -> str:
    if not is_epn(value):
        raise InvalidInput("path EPN ID must match ^[A-Za-z0-9_-]{1,64}$", field="epn")
    return value


def query(request: Request) -> dict[str, str]:
    return dict(request.query_params or {})


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(body=payload, status_code=status, headers={"Content-Type": "application/json"})


def only(fields: dict[str, Any], allowed: set[str], what: str = "field") -> dict[str, Any]:
    """Refuse the first unknown key (sorted, so the message is stable); return `fields` unchanged."""
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidInput(f"unknown {what} {unknown[0]!r}", field=unknown[0])
    return fields


def paging(params: dict[str, str]) -> tuple[int, str | None]:
    """`limit` (1..MAX_LIMIT, default DEFAULT_LIMIT) and `cursor` (opaque; the adapter checks it) of a list route."""
    raw = params.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
            raise InvalidInput(f"query parameter 'limit' must be an integer in 1..{MAX_LIMIT}", field="limit")
        limit = int(raw)
    cursor = params.get("cursor")
    if cursor is not None and not cursor:
        raise InvalidInput("query parameter 'cursor' must be a cursor from a previous page", field="cursor")
    return limit, cursor
