"""A faster DynamoDB request path for the local moto server: same bytes on the wire, less Python per request.

A cProfile of the local moto server under the fleet benchmark (bench/README.md, Fleet) spent 51 % of its
DynamoDB time in moto's generic response serialiser (moto/core/serialize.py: for every member of every
structure, an attribute picker tries up to a dozen alias spellings, each through `xform_name`) and 17 %
in `DomainDispatcherApplication.get_application` (which lists moto's package directory on every request
to find the backend), so the serialised stand-in answered about 70 requests a second.

What this module does, in the moto server process only (local/motoserver.py installs it):

- `FastDynamoDB`, a WSGI middleware in front of moto's dispatcher, hands a request whose X-Amz-Target is
  `DynamoDB_20120810.<Operation>` and whose SigV4 credential scope names `dynamodb` straight to moto's
  own DynamoDB Flask application: exactly the application the dispatcher picks for such a request (its
  `infer_service_region_host`: signed request, service `dynamodb`, API version after 2011-12-05), so the
  per-request lookup is skipped, nothing else. Anything else (S3, SQS, IoT, /moto-api, unsigned or
  DynamoDB Streams requests) goes through the dispatcher as before.
- For such requests only, `DynamoHandler.serialized` answers a successful result (ActionResult or
  DynamoResult holding plain dicts and lists) with a serialiser compiled once per output shape from the
  same botocore model: the same members in the same order, picked by the same alias keys, the same
  conversions (int/float/str, base64 of blobs, moto's own timestamp serialiser) and the same `json.dumps`
  call, so the body is byte-for-byte moto's. Everything else - errors (ConditionalCheckFailed with its
  item, TransactionCanceled reasons, ValidationException), EmptyResult, paginated results, objects that
  are not dicts, pretty-printed responses, shapes with features the compiled serialiser does not
  implement, any exception while serialising - falls back to moto's own serialiser. moto's per-request
  listing of DynamoHandler's methods (inspect.getmembers, to find the action's method) is done once.

tests/local/test_motofast.py runs every DynamoDB operation the project uses against moto's path and this
one and compares status, headers and raw bodies, and in `check` mode every fast answer is compared with
the body moto's serialiser makes from the same result object. `OTA_MOTO_FAST=0` in the moto server's
environment turns it off, `OTA_MOTO_FAST=check` serialises every answer both ways and logs mismatches.

Does not: change any DynamoDB semantics or the table model (local/motoindex.py does the Query index),
touch other services, or run outside the moto server process. moto's internals are not an API:
`install()` checks the version and a digest of every moto source file whose behaviour is reproduced
here, and raises `MotoInternalsChanged` if they differ from the verified ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from local.motoindex import MotoInternalsChanged, require_verified
from local.motojson import Fallback, encode

__all__ = ["Fallback", "FastDynamoDB", "encode", "install", "installed", "is_dynamodb", "uninstall"]

VERIFIED_VERSION = "5.2.5"
# sha256 (first 16 hex) of the moto source files whose behaviour this module reproduces or relies on.
VERIFIED: dict[str, str] = {
    "core/serialize.py": "bb79b5b1196894de",
    "core/responses.py": "f23c9f5df97fa2a5",
    "core/utils.py": "2ab2d4751404ef05",
    "moto_server/werkzeug_app.py": "25e6b99793990485",
    "dynamodb/responses.py": "8e3fb141a935b9d3",
    "dynamodb/models/utilities.py": "0a0a80f3b1068b8c",
}
TARGET_PREFIX = "DynamoDB_20120810."
log = logging.getLogger("motofast")
_local = threading.local()
_installed: dict[str, Any] = {}
Encode = Callable[[Any, Any, Any], "tuple[int, dict[str, str], str] | None"]


# -- installing it ---------------------------------------------------------------------------------------


def digests() -> dict[str, str]:
    import moto

    root = Path(moto.__file__).resolve().parent
    out = {}
    for name in VERIFIED:
        try:
            out[name] = hashlib.sha256((root / name).read_bytes()).hexdigest()[:16]
        except OSError as err:
            raise MotoInternalsChanged(f"moto has no {name}: local/motofast.py must be re-verified") from err
    return out


def check(expected: dict[str, str] | None = None) -> None:
    """Raise MotoInternalsChanged unless the installed moto is the verified one (or has the `expected` digests)."""
    require_verified("motofast", VERIFIED_VERSION, VERIFIED if expected is None else expected, digests())


class Mismatch(list[tuple[str, str, str]]):
    """check mode: (operation, moto's body, fast body) of every answer that differed."""


def install(*, verify: bool = True, mode: str = "on", encoder: Encode = encode) -> Mismatch:
    """Give DynamoHandler the fast `serialized` (taken only inside FastDynamoDB); return check mode's mismatches."""
    if verify:
        check()
    from moto.core.responses import BaseResponse
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoHandler

    if "serialized" in _installed:
        raise RuntimeError("local.motofast is installed already")
    if "serialized" in DynamoHandler.__dict__:
        raise MotoInternalsChanged("DynamoHandler defines its own serialized: local/motofast.py must be re-verified")
    moto_serialized = BaseResponse.serialized
    mismatches = Mismatch()

    def serialized(self: Any, action_result: Any) -> Any:
        if not getattr(_local, "fast", False):
            return moto_serialized(self, action_result)
        try:
            operation = get_service_model(self.boto3_service_name).operation_model(self._get_action())
        except Exception:
            return moto_serialized(self, action_result)
        if self.determine_response_protocol(operation.service_model) != "json":
            return moto_serialized(self, action_result)
        answer = encoder(self, action_result, operation)
        if answer is None:
            return moto_serialized(self, action_result)
        if mode == "check":
            expected = moto_serialized(self, action_result)
            if (expected[0], expected[2]) != (answer[0], answer[2]):
                mismatches.append((operation.name, str(expected[2]), answer[2]))
                log.error("motofast mismatch in %s", operation.name)
            return expected
        status, headers, body = answer
        headers.update(self.response_headers)
        return status, headers, body

    DynamoHandler.serialized = serialized  # type: ignore[method-assign]
    _installed["serialized"] = serialized
    _install_method_names(DynamoHandler)
    return mismatches


def _install_method_names(handler: type) -> None:
    """moto lists the handler class's functions (inspect.getmembers) on every request to find the action's
    method: for DynamoHandler, on the fast path, list them once (the class does not change after install)."""
    from moto.core import responses

    moto_names = responses.method_names_from_class
    names: list[str] = []

    def method_names_from_class(clazz: object) -> list[str]:
        if clazz is not handler or not getattr(_local, "fast", False):
            return moto_names(clazz)
        if not names:
            names.extend(moto_names(clazz))
        return list(names)

    responses.method_names_from_class = method_names_from_class
    _installed["method_names_from_class"] = moto_names


def uninstall() -> None:
    from moto.dynamodb.responses import DynamoHandler

    if _installed.pop("serialized", None) is not None:
        del DynamoHandler.serialized
    moto_names = _installed.pop("method_names_from_class", None)
    if moto_names is not None:
        from moto.core import responses

        responses.method_names_from_class = moto_names


@contextlib.contextmanager
def installed(*, verify: bool = True, mode: str = "on", encoder: Encode = encode) -> Iterator[Mismatch]:
    mismatches = install(verify=verify, mode=mode, encoder=encoder)
    try:
        yield mismatches
    finally:
        uninstall()


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def is_dynamodb(environ: dict[str, Any]) -> bool:
    """A signed DynamoDB (not Streams) request that moto's dispatcher would route to the `dynamodb` backend."""
    if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(TARGET_PREFIX):
        return False
    path = environ.get("PATH_INFO", "")
    if not isinstance(path, str) or path.startswith(("/moto-api", "/latest/")) or path == "/favicon.ico":
        return False
    try:  # 'AWS4-HMAC-SHA256 Credential=KEY/20260101/us-east-1/dynamodb/aws4_request, ...'
        scope = str(environ["HTTP_AUTHORIZATION"]).split(",")[0].split()[1].split("/")
        return len(scope) == 5 and scope[3].lower() == "dynamodb"
    except (KeyError, IndexError):
        return False


class FastDynamoDB:
    """WSGI: DynamoDB requests straight to moto's DynamoDB application with the fast serialiser; others as before."""

    def __init__(self, dispatcher: Any, *, enabled: bool = True) -> None:
        self._dispatcher = dispatcher
        self.enabled = enabled
        self._app: WsgiApp | None = None
        self.fast = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.enabled or not is_dynamodb(environ):
            return self._dispatcher(environ, start_response)
        if self._app is None:
            self._app = self._dispatcher.get_application(environ)  # the dispatcher's own choice, once
        self.fast += 1
        _local.fast = True
        try:
            return self._app(environ, start_response)
        finally:
            _local.fast = False
