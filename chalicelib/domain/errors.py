"""The control plane's error tree. The API maps each class to one HTTP status (chalicelib/api/errors.py).

Every error carries a sentence for humans and, where it is about a request field, the field's name.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every expected failure of a use case."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """A request field is missing, of the wrong type or out of range (HTTP 400)."""


class Unauthorized(DomainError):
    """No usable credential (HTTP 401)."""


class Forbidden(DomainError):
    """The credential is known but does not allow this (HTTP 403)."""


class NotFound(DomainError):
    """The named thing does not exist (HTTP 404)."""


class Conflict(DomainError):
    """The request contradicts the current state (HTTP 409)."""


class ConcurrentUpdate(DomainError):
    """A conditional write lost a race; the use case reloads and retries (never reaches a client).
    `current`, when the store returned it with the failure, is the entity as stored now: a caller may
    merge into it instead of reading it again."""

    def __init__(self, message: str, *, field: str | None = None, current: object = None) -> None:
        super().__init__(message, field=field)
        self.current = current
