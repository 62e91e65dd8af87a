"""The operator API over HTTPS: where it is, who we are, and one call per request. No printing.

The API URL and bearer token come from, in order: the command line, OTA_API_URL / OTA_TOKEN, or a
local stack's stack.json (`.local-stack/` or the `--stack-dir` given). An API deployed on AWS
(IAM auth) is called with SigV4 signatures instead (cli.sigv4): `--auth sigv4`, or `--auth auto` (the
default) for an API Gateway URL when no token is given. Errors become ApiError (the API's own
message, and the HTTP status) or Unreachable (nothing answered).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests

DEFAULT_STACK_DIR = Path(".local-stack")
TIMEOUT = 60.0


class CliError(Exception):
    """A failure the CLI reports in one line; `code` is the exit status."""

    code = 1


class UsageError(CliError):
    code = 2


class ApiError(CliError):
    """The API answered with an error status."""

    def __init__(self, status: int, message: str, error: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.field = field
        self.code = 1 if status < 500 else 2


class Unreachable(CliError):
    code = 3


AUTH_MODES = ("auto", "token", "sigv4")


@dataclass(frozen=True)
class Target:
    api: str
    token: str | None
    hint: str = ""  # said when the API cannot be reached
    signer: requests.auth.AuthBase | None = None  # SigV4 for an API with IAM auth; then no token is sent


def with_auth(target: Target, mode: str = "auto", profile: str | None = None, region: str | None = None) -> Target:
    """Choose how requests are authenticated: the bearer token, or SigV4 from the AWS credential chain."""
    from cli import sigv4

    if mode not in AUTH_MODES:
        raise UsageError(f"--auth must be one of {', '.join(AUTH_MODES)}")
    if mode == "token" or (mode == "auto" and (target.token or not sigv4.is_aws_api(target.api))):
        return target
    try:
        signer = sigv4.from_chain(target.api, profile, region)
    except sigv4.SigningError as err:
        raise UsageError(str(err)) from err
    return Target(target.api, None, target.hint, signer)


def resolve(api: str | None, token: str | None, stack_dir: Path | None,
            environ: Mapping[str, str] = os.environ) -> Target:
    """Pick the API URL and token from flags, environment, then stack.json."""
    api = api or environ.get("OTA_API_URL") or None
    token = token or environ.get("OTA_TOKEN") or None
    if api is None or token is None:
        stack_file = (stack_dir or DEFAULT_STACK_DIR) / "stack.json"
        try:
            state = json.loads(stack_file.read_text())
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read {stack_file}: {err}") from err
        hint = "" if api else f" (from {stack_file}: is the local stack running? try 'ota-local status')"
        stack_api = state.get("api_url")
        if not api or api.rstrip("/") == str(stack_api or "").rstrip("/"):
            token = token or state.get("token")  # the stack's token goes only to the stack's API
        api = api or stack_api
        if api:
            return Target(api.rstrip("/"), token, hint)
    if not api:
        raise UsageError("no API URL: pass --api URL, set OTA_API_URL, or start a local stack with 'ota-local up'")
    return Target(api.rstrip("/"), token)


def _message(reply: requests.Response) -> tuple[str, str | None, str | None]:
    """(message, error code, field) of an error answer."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("Message")
        if isinstance(message, str) and message:
            code, field = body.get("error") or body.get("Code"), body.get("field")
            return message, code if isinstance(code, str) else None, field if isinstance(field, str) else None
    text = reply.text.strip().splitlines()[0][:200] if reply.text.strip() else ""
    return f"HTTP {reply.status_code} {reply.reason or ''}".strip() + (f": {text}" if text else ""), None, None


PAGE_LIMIT = 1000  # the API's largest page


class ApiClient:
    """One method per HTTP verb; answers are the decoded JSON bodies."""

    def __init__(self, target: Target, session: requests.Session | None = None, timeout: float = TIMEOUT) -> None:
        self.target = target
        self._session = session or requests.Session()
        self._timeout = timeout

    def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None) -> Any:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.target.token and self.target.signer is None:
            all_headers["Authorization"] = f"Bearer {self.target.token}"
        url = f"{self.target.api}{path}"
        try:
            reply = self._session.request(method, url, json=body, params=params, headers=all_headers,
                                          timeout=self._timeout, auth=self.target.signer)
        except requests.RequestException as err:
            raise Unreachable(f"cannot reach the API at {self.target.api}: {type(err).__name__}"
                              f"{self.target.hint}") from err
        if reply.status_code >= 400:
            message, code, field = _message(reply)
            raise ApiError(reply.status_code, message, code, field)
        if not reply.content:
            return {}
        try:
            return reply.json()
        except ValueError as err:
            raise ApiError(reply.status_code, f"the API answered {method} {path} with a body that is not JSON") from err

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def get_all(self, path: str, key: str, params: Mapping[str, str] | None = None,
                limit: int | None = None) -> dict[str, Any]:
        """A paged listing: every page, following `next_cursor`, or only the first `limit` items. Returns
        {key: items, "next_cursor": cursor of what was not fetched (None when everything was)}."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            page_size = min(PAGE_LIMIT, limit - len(items)) if limit is not None else PAGE_LIMIT
            query = {**(params or {}), "limit": str(page_size), **({"cursor": cursor} if cursor else {})}
            page = self.get(path, query)
            items.extend(page.get(key) or [])
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and len(items) >= limit):
                return {key: items, "next_cursor": cursor or None}

    def post(self, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        return self.request("POST", path, body=body if body is not None else {}, headers=headers)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def put_file(self, url: str, handle: BinaryIO, size: int) -> None:
        """PUT a file to a presigned URL (no bearer token: the URL is the credential)."""
        try:
            reply = self._session.put(url, data=handle, headers={"Content-Length": str(size)},
                                      timeout=max(self._timeout, 600.0))
        except requests.RequestException as err:
            raise Unreachable(f"cannot upload to the storage URL: {type(err).__name__}") from err
        if reply.status_code >= 300:
            raise ApiError(reply.status_code, f"upload refused by storage: HTTP {reply.status_code}")
