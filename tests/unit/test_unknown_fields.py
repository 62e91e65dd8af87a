"""docs/protocol.md section 4: unknown fields in any JSON message are ignored by both sides; a missing
required field or an unknown `type` is an error."""

from __future__ import annotations

import json

import pytest

from otaformat import messages, wire
from otaformat.errors import FormatError


def _with_extra(encoded: bytes) -> bytes:
    body = json.loads(encoded)
    body["x-vendor-extension"] = {"anything": [1, 2, 3]}
    body["future_field"] = "ignored"
    return json.dumps(body).encode()


@pytest.mark.parametrize(("encoded", "decode"), [
    (messages.encode(messages.Status("ex-1", "IN_PROGRESS", "DOWNLOADING", None, 3, 7)), messages.decode),
    (messages.encode(messages.Inventory("1.0.0", "m1", {"demo": "1.0.0"})), messages.decode),
    (messages.encode(messages.Cancel("ex-1")), messages.decode),
    (messages.encode(messages.UrlRefresh("ex-1")), messages.decode),
    (wire.encode_ack(wire.make_ack("ex-1", 9, {0, 1, 3}, 8)), wire.decode_ack),
    (wire.encode_request(wire.make_request("ex-1", 9, [2, 5])), wire.decode_request),
])
def test_unknown_fields_are_ignored(encoded, decode):
    assert decode(_with_extra(encoded)) == decode(encoded)


@pytest.mark.parametrize("payload", [
    b'{"v":1,"type":"status","state":"IN_PROGRESS","seq":1}',          # no execution id
    b'{"v":1,"type":"telemetry","x":"ex-1"}',                          # unknown type
    b'{"x":"ex-1","n":3}',                                             # ack without its stream
])
def test_missing_required_fields_and_unknown_types_are_errors(payload):
    decoder = wire.decode_ack if b'"type"' not in payload else messages.decode
    with pytest.raises(FormatError):
        decoder(payload)
