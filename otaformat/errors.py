"""The error tree of the package format and wire protocol.

Every error carries a short machine-readable `code` and a human sentence. Callers catch `FormatError`
(anything malformed or untrusted) or one of its two branches.
"""

from __future__ import annotations


class FormatError(Exception):
    """Base of every otaformat error: the input is malformed, unsafe or untrusted."""

    code = "malformed"

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class MalformedError(FormatError):
    """Bytes or JSON that do not follow the schema (wrong types, missing keys, out of bounds)."""

    code = "malformed"


class VerificationError(FormatError):
    """A signature, hash, length, path, model, expiry or version check failed."""

    code = "verification"


class UnsafeArchiveError(VerificationError):
    """Paths, file types or sizes inside a package that would escape the install root or exhaust disk."""

    code = "unsafe-archive"
