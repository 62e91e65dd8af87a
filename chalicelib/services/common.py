"""Small helpers shared by use cases: field validation, retries of optimistic writes, timestamps."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from otaformat.errors import FormatError

from ..domain.errors import ConcurrentUpdate, InvalidInput

T = TypeVar("T")
RETRIES = 40


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def checked(field: str, check: Callable[[Any], T], value: Any) -> T:
    """Run an otaformat validator, turning its error into InvalidInput naming `field`."""
    try:
        return check(value)
    except FormatError as err:
        raise InvalidInput(f"field '{field}': {err.reason}", field=field) from err


def text(body: dict[str, Any], field: str, max_len: int, *, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise InvalidInput(f"field '{field}' must be a string of 1..{max_len} characters", field=field)
    return value


def integer(body: dict[str, Any], field: str, low: int, high: int, default: int | None = None, *,
            parent: str | None = None) -> int:
    """body[field] as an int in low..high (bools refused); errors name `parent.field` when nested."""
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        name = f"{parent}.{field}" if parent else field
        raise InvalidInput(f"field '{name}' must be an integer in {low}..{high}", field=name)
    return value


def retrying(step: Callable[[], T], attempts: int = RETRIES) -> T:
    """Run a read-modify-conditional-write step until it does not lose a race (short jittered backoff)."""
    for attempt in range(attempts - 1):
        try:
            return step()
        except ConcurrentUpdate:
            time.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))
    return step()
