"""Every decode path of the device-message Lambda is bounded before parsing: each topic's payload and
the SQS body itself. Hostile input is a FormatError (or None for a body), never a RecursionError."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.services.device_messages import DeviceMessage, decode, decode_safely
from chalicelib.triggers.device_messages import parse_body, parse_records
from otaformat import messages, wire
from otaformat.errors import FormatError

DEEP = b"[" * 5000 + b"]" * 5000


def message(leaf: str, payload: bytes) -> DeviceMessage:
    return DeviceMessage(epn="dev-1", leaf=leaf, payload=payload, received_at=0.0, message_id="m-1")


@pytest.mark.parametrize("leaf", ["get", "status", "ack"])
@pytest.mark.parametrize("payload", [
    DEEP,
    b'{"type": "url", "v": 1, "x": ' + DEEP + b"}",
    b'{"v": 1, "type": "inventory", "apps": ' + DEEP + b"}",
    b'{"x": "ex-1", "s": 1, "o": 0, "b": [[[[[[]]]]]]}',
])
def test_every_topic_refuses_deep_nesting_before_parsing(leaf, payload):
    with pytest.raises(FormatError, match="nesting deeper than"):
        decode(message(leaf, payload))


@pytest.mark.parametrize("leaf", ["get", "status", "ack"])
def test_every_topic_refuses_oversized_payloads(leaf):
    with pytest.raises(FormatError, match="exceeds the limit"):
        decode(message(leaf, b" " * (wire.MAX_CONTROL_MESSAGE + 1)))


@pytest.mark.parametrize(("leaf", "payload"), [
    ("get", messages.encode(messages.Status("ex-1", "FAILED", None, None, 1))),
    ("get", messages.encode(messages.Cancel("ex-1"))),
    ("status", messages.encode(messages.UrlRefresh("ex-1"))),
    ("ack", b'{"x": "ex-1\\u0000\\ud800", "s": 1, "n": 0}'),  # a lone surrogate no table key could hold
    ("status", messages.encode(messages.Status("ex 1; DROP", "FAILED", None, None, 1))),
])
def test_messages_on_the_wrong_topic_or_with_foreign_ids_are_malformed(leaf, payload):
    with pytest.raises(FormatError):
        decode(message(leaf, payload))
    assert decode_safely(message(leaf, payload)) is None


@pytest.mark.parametrize(("leaf", "payload", "kind"), [
    ("get", messages.encode(messages.UrlRefresh("ex-1.r2")), messages.UrlRefresh),
    ("get", wire.encode_request(wire.make_request("ex-1", 7, [1, 2])), wire.BlockRequest),
    ("ack", wire.encode_ack(wire.make_ack("ex-1", 7, {0, 1}, 10)), wire.Ack),
    ("status", messages.encode(messages.Inventory("1.0.0", "model-a", {"demo": "1.0.0"})), messages.Inventory),
])
def test_good_messages_still_decode(leaf, payload, kind):
    assert isinstance(decode(message(leaf, payload)), kind)


def _body(**fields) -> str:
    return json.dumps({"topic": "ota/dev-1/status", "payload_b64": base64.b64encode(b"{}").decode(),
                       "received_at": 1000, **fields})


@pytest.mark.parametrize("body", [
    DEEP.decode(),
    '{"topic": "ota/dev-1/status", "payload_b64": "", "x": ' + DEEP.decode() + "}",
    " " * (300 * 1024),
    _body(topic=["ota", "dev-1"]),
    None,
    12,
])
def test_sqs_body_is_bounded_before_parsing_and_never_raises(body):
    assert parse_body(body, 0.0, "m-1") is None


def test_sqs_body_keeps_the_message_id():
    parsed = parse_body(_body(), 0.0, "m-7")
    assert parsed is not None and (parsed.epn, parsed.leaf, parsed.message_id, parsed.received_at) == (
        "dev-1", "status", "m-7", 1.0)


def test_parse_records_counts_what_it_drops():
    records = [{"messageId": "a", "body": _body()}, {"messageId": "b", "body": DEEP.decode()}, "junk", {}]
    batch, malformed = parse_records(records, 0.0)
    assert [m.message_id for m in batch] == ["a"] and malformed == 3
