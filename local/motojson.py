"""The serialiser local/motofast.py answers DynamoDB results with: moto's bytes, compiled per output shape.

moto's JSON response serialiser (moto/core/serialize.py, ResponseSerializer and BaseJSONSerializer)
walks the botocore output shape of every result, and for every member of every structure asks an
attribute picker to try up to a dozen alias spellings. `Compiler` does the same walk once per shape and
keeps, per structure member, the keys moto's picker would try in order (computed with moto's own alias
providers), and per leaf the same conversion (str/int/float, base64 of blobs, moto's own timestamp
serialiser); `encode` then writes `json.dumps` of the converted result, as moto's serialiser does.
What it does not implement (objects that are not dicts, serialization names, documents, event
streams, pretty printing, response transformers) raises `Fallback`, and `encode` returns None: moto's
serialiser answers. Used only by local/motofast.py inside the moto server; verified there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from typing import Any

Walk = Callable[[Any], Any]


class Fallback(Exception):
    """The compiled serialiser does not handle this value or shape: moto's serialiser answers."""


# -- the compiled serialiser ---------------------------------------------------------------------------


def _candidates(shape: Any, parent: Any, key: str) -> list[str]:
    """The keys moto's XFormedAttributePicker tries, in order, for member `key` of a dict (moto/core/serialize.py)."""
    from botocore import xform_name
    from moto.core.serialize import DEFAULT_ALIAS_PROVIDERS, AttributePickerContext

    shape.parent = parent  # as _serialize_type_structure does before picking
    context = AttributePickerContext(obj={}, key=key, shape=shape)
    keys: list[str] = []
    for provider_cls in DEFAULT_ALIAS_PROVIDERS:
        provider = provider_cls(context)  # type: ignore[abstract]  # the concrete providers of the list
        if provider.has_alias(key):
            alias = provider.get_alias(key)
            keys += [alias, xform_name(alias)]
    if any("." in k for k in keys):
        raise Fallback(f"dotted key in {keys}")  # moto's get_value would walk a path
    return keys


class Compiler:
    """Per botocore shape, a function from moto's result value to the value json.dumps writes (cached)."""

    def __init__(self) -> None:
        from moto.core.serialize import TimestampSerializer

        self._cache: dict[str, Walk] = {}  # structure shape name (unique in the service model) -> walker
        self._timestamps = TimestampSerializer("unixtimestamp")  # BaseJSONSerializer.DEFAULT_TIMESTAMP_FORMAT

    def walk(self, shape: Any) -> Walk:
        found = self._cache.get(shape.name)
        if found is None:
            found = self._compile(shape)
        return found

    def _compile(self, shape: Any) -> Walk:
        if shape.serialization.get("name") or getattr(shape, "is_document_type", False):
            raise Fallback(f"shape {shape.name}: serialization name or document")
        kind = shape.type_name
        if kind == "structure":
            members: list[tuple[str, list[str], Walk | None]] = []

            def structure(value: Any) -> Any:
                if type(value) is not dict:
                    raise Fallback(f"{type(value).__name__} for structure")
                out: dict[str, Any] = {}
                for name, keys, walk in members:
                    for key in keys:
                        if key in value:
                            member = value[key]
                            if member is not None:
                                out[name] = walk(member) if walk is not None else member
                            break
                return out

            self._cache[shape.name] = structure  # recursive shapes (AttributeValue) find it
            for name, member_shape in shape.members.items():
                if member_shape.serialization.get("name"):
                    raise Fallback(f"member {name}: serialization name")
                members.append((name, _candidates(member_shape, shape, name), self._leaf(member_shape)))
            return structure
        raise Fallback(f"top-level {kind}")

    def _leaf(self, shape: Any) -> Walk | None:
        """None: json.dumps writes moto's value as it is (booleans, and what moto's _default_serialize keeps)."""
        kind = shape.type_name
        if shape.serialization.get("name") or getattr(shape, "is_document_type", False):
            raise Fallback(f"shape {shape.name}: serialization name or document")
        if kind == "structure":
            return self.walk(shape)
        if kind == "list":
            return self._list(shape)
        if kind == "map":
            return self._map(shape)
        if kind == "string":
            return _string
        if kind in ("integer", "long"):
            return int
        if kind in ("float", "double"):
            return float
        if kind == "blob":
            return _base64
        if kind == "timestamp":
            return self._timestamp(shape)
        return None

    def _list(self, shape: Any) -> Walk:
        member = shape.member
        if member.serialization.get("name"):
            raise Fallback("list member with serialization name")
        walk = self._leaf(member)
        is_structure = member.type_name == "structure"

        def listing(value: Any) -> Any:
            if walk is None:
                return list(value)
            if is_structure:  # moto appends the raw item when the structure wrote nothing (None)
                return [walk(item) if item is not None else item for item in value]
            return [walk(item) for item in value]

        return listing

    def _map(self, shape: Any) -> Walk:
        walk = self._leaf(shape.value)
        is_structure = shape.value.type_name == "structure"

        def mapping(value: Any) -> Any:
            if walk is None:
                return dict(value.items())
            if is_structure:  # a None structure writes no key
                return {k: walk(v) for k, v in value.items() if v is not None}
            return {k: walk(v) for k, v in value.items()}

        return mapping

    def _timestamp(self, shape: Any) -> Walk:
        def timestamp(value: Any) -> Any:
            out: dict[str, Any] = {}
            self._timestamps.serialize(out, value, shape, "timestamp")
            return out["timestamp"]

        return timestamp


def _string(value: Any) -> Any:
    if isinstance(value, Enum):
        value = value.value
    return str(value) if value not in [None, {}, []] else value


def _base64(value: Any) -> str:
    import base64

    if isinstance(value, str):
        value = value.encode("utf-8")
    return base64.b64encode(value).strip().decode("utf-8")


_compiler: list[Compiler] = []


def encode(handler: Any, action_result: Any, operation_model: Any) -> tuple[int, dict[str, str], str] | None:
    """moto's (status, headers, body) for a successful DynamoDB result, or None when moto's serialiser must do it."""
    from moto import settings
    from moto.core.responses import ActionResult
    from moto.dynamodb.responses import DynamoResult

    if type(action_result) not in (ActionResult, DynamoResult) or isinstance(action_result.result, Exception):
        return None
    if settings.PRETTIFY_RESPONSES or getattr(handler, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None):
        return None
    if operation_model.has_event_stream_output or operation_model.output_shape is None:
        return None
    if not _compiler:
        _compiler.append(Compiler())
    try:
        body = json.dumps(_compiler[0].walk(operation_model.output_shape)(action_result.result))
    except Exception:
        return None
    status = operation_model.http.get("responseCode", 200)
    return status, {"Content-Type": "application/x-amz-json-1.0"}, body
