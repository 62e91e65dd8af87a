"""Semantic versions with bounded fields (MAJOR.MINOR.PATCH, each 0..MAX_FIELD). No I/O.

Bounds stop fast-forward attacks that pin a device to an absurd version (THREATS 7). Pre-release and
build suffixes are not accepted: a package version is a release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import MalformedError

MAX_FIELD = 999_999
_VERSION = re.compile(r"^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$")


@dataclass(frozen=True, order=True)
class Version:
    """A release version; ordering compares major, minor, patch numerically."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: object) -> Version:
        if not isinstance(text, str):
            raise MalformedError(f"version must be a string like 1.2.3, got {type(text).__name__}")
        match = _VERSION.match(text)
        if not match:
            raise MalformedError(f"version {text[:40]!r} is not MAJOR.MINOR.PATCH with fields 0..{MAX_FIELD}")
        return cls(*(int(part) for part in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def is_version(text: object) -> bool:
    try:
        Version.parse(text)
    except MalformedError:
        return False
    return True
