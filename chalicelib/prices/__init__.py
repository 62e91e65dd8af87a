"""Price tables: one JSON file per table (`<provider>-<region>-<yyyy>-<mm>.json`), versioned in the repo.

A table names its sources and the date its figures were transcribed; it is never edited in place: new
prices are a new file, and `DEFAULT` names the one estimates use unless asked for another. `load`
reads one into `domain.pricing.Prices` and refuses a file with a missing or unknown price. Does not
fetch anything from the network.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..domain.errors import InvalidInput
from ..domain.pricing import Prices

DEFAULT = "aws-us-east-1-2026-11"
_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"^[a-z0-9-]{1,64}$")


def names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.json"))


def raw(name: str = DEFAULT) -> dict[str, Any]:
    """The table as stored (sources, date, notes included)."""
    if not _NAME.fullmatch(name) or name not in names():
        raise InvalidInput(f"query parameter 'prices': unknown price table {name!r}; known: {', '.join(names())}",
                           field="prices")
    data: dict[str, Any] = json.loads((_DIR / f"{name}.json").read_text())
    return data


def load(name: str = DEFAULT) -> Prices:
    data = raw(name)
    wanted = {f.name for f in fields(Prices)} - {"name", "region", "date"}
    given = set(data["prices"])
    if given != wanted:
        raise ValueError(f"price table {name}: missing {sorted(wanted - given)}, unknown {sorted(given - wanted)}")
    return Prices(name=data["name"], region=data["region"], date=data["date"], **data["prices"])
