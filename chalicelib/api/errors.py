"""The one mapping from failures to HTTP answers: {"error": code, "message": sentence naming the field}.

Domain errors and otaformat validation errors become 4xx; anything a hostile body could trigger in
parsing (ValueError, TypeError, KeyError, UnicodeError, RecursionError) becomes 400; infrastructure
failures become 503 without details. No route lets a traceback or a bare 500 out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from chalice import Response

from otaformat.errors import FormatError

from ..domain import errors as de

log = logging.getLogger(__name__)

STATUS = {
    de.InvalidInput: (400, "InvalidInput"),
    de.Unauthorized: (401, "Unauthorized"),
    de.Forbidden: (403, "Forbidden"),
    de.NotFound: (404, "NotFound"),
    de.Conflict: (409, "Conflict"),
    de.ConcurrentUpdate: (409, "ConcurrentUpdate"),
}


MAX_MESSAGE = 500  # validators may quote the offending value; a hostile one must not come back whole


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "message": _clip(message)}
    if field is not None:
        body["field"] = _clip(field)
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def to_response(err: BaseException) -> Response:
    if isinstance(err, de.DomainError):
        status, code = STATUS.get(type(err), (400, "InvalidInput"))
        return error_response(status, code, err.message, err.field)
    if isinstance(err, FormatError):
        return error_response(400, "InvalidInput", err.reason)
    if isinstance(err, ValueError | TypeError | KeyError | UnicodeError | RecursionError | OverflowError):
        log.warning("request rejected by a parser", exc_info=True)
        return error_response(400, "InvalidInput", f"request could not be parsed ({type(err).__name__})")
    log.exception("request failed")
    return error_response(503, "ServiceUnavailable", "the service could not complete the request; retry later")


def handled(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a view so that every failure goes through `to_response`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Exception as err:  # the catch-all of the error mapping
            return to_response(err)

    return wrapper


def in_house_shape(response: Response) -> Response:
    """Chalice answers some requests itself (415 non-JSON body, 405 undeclared method, 403 from the
    authorizer) with {"Code", "Message"}; give them the same {"error", "message"} shape as ours."""
    body = response.body
    if 400 <= response.status_code < 500 and isinstance(body, dict) and set(body) == {"Code", "Message"}:
        response.body = {"error": str(body["Code"]), "message": _clip(str(body["Message"]))}
    return response
