"""Bounded JSON: size and nesting are refused before parsing, brackets inside strings do not count,
the scan is linear whatever the input, and every device-to-cloud decoder goes through it."""

from __future__ import annotations

import time

import pytest

from otaformat import boundedjson, messages, wire
from otaformat.canonical import parse_json
from otaformat.errors import MalformedError

DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('"[[[[["', 0), ('{"a": "]]]{{{"}', 1),
    ('["\\"[[[", []]', 2), ('["\\\\", [[]]]', 3), ('"\\\\\\"[[["', 0), ('"unterminated [[[', 0),
])
def test_nesting_depth_counts_brackets_outside_strings_only(text, depth):
    assert boundedjson.nesting_depth(text, 100) == depth


def test_depth_is_refused_before_parsing():
    # deep and also broken further on: a parser would complain about the syntax, the scan speaks first
    with pytest.raises(MalformedError, match="nesting deeper than 4"):
        boundedjson.loads("[" * 5 + "garbage", max_bytes=100, max_depth=4)
    with pytest.raises(MalformedError, match="nesting deeper than 16"):
        boundedjson.loads(DEEP, max_bytes=len(DEEP), max_depth=16)


def test_size_is_refused_before_anything_else():
    with pytest.raises(MalformedError, match="exceeds the limit of 10"):
        boundedjson.loads(b'{"a": "0123456789"}', max_bytes=10, max_depth=4)


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[1,]", b"NaN", b'{"a": 1, "a": 2}', b"[Infinity]"])
def test_everything_else_malformed_is_a_malformed_error(data):
    with pytest.raises(MalformedError):
        boundedjson.loads(data, max_bytes=100, max_depth=4)


def test_depth_at_the_limit_and_brackets_in_strings_parse():
    assert boundedjson.loads('[[[["[[[[[[[[[[[[[[[[[[[[[[["]]]]', max_bytes=100, max_depth=4) == [[[["[" * 23]]]]


@pytest.mark.parametrize("hostile", [
    '"' + '\\"' * 200_000,  # one unterminated string of escaped quotes
    '"' * 400_001,  # strings opened and closed
    "[]" * 200_000,  # wide, not deep
    "\\" * 400_000,  # stray backslashes
])
def test_the_scan_is_linear_on_pathological_input(hostile):
    began = time.perf_counter()
    with pytest.raises(MalformedError):
        boundedjson.loads(hostile, max_bytes=1 << 20, max_depth=16)
    assert time.perf_counter() - began < 2.0


def test_parse_json_keeps_its_default_limits_and_takes_a_depth():
    assert parse_json(b"[" * 16 + b"]" * 16) is not None
    with pytest.raises(MalformedError, match="nesting"):
        parse_json(b"[" * 17 + b"]" * 17)
    with pytest.raises(MalformedError, match="nesting deeper than 2"):
        parse_json(b"[[[]]]", max_depth=2)


@pytest.mark.parametrize("decode", [wire.decode_ack, wire.decode_request, messages.decode_device])
@pytest.mark.parametrize("payload", [DEEP, b'{"x": "e", "s": 1, "n": 0, "b": [[[[[[]]]]]]}'])
def test_device_decoders_refuse_deep_nesting_before_parsing(decode, payload):
    with pytest.raises(MalformedError, match="nesting deeper than 4"):
        decode(payload)


def test_device_decoders_refuse_oversized_messages():
    big = b'{"v": 1, "type": "status", "x": "e", "state": "FAILED", "seq": 1, "reason": "' + b"r" * 20000 + b'"}'
    with pytest.raises(MalformedError, match="exceeds the limit"):
        messages.decode_device(big)
    with pytest.raises(MalformedError, match="exceeds the limit"):
        wire.decode_ack(b" " * (wire.MAX_CONTROL_MESSAGE + 1))


def test_decode_device_accepts_what_agents_send_and_nothing_cloud_bound():
    inventory = messages.Inventory("1.2.0", "model-a", {"demo": "1.0.0"})
    assert messages.decode_device(messages.encode(inventory)) == inventory
    status = messages.Status("ex-1", "FAILED", None, "script said [[[[[[[[[[", 3)
    assert messages.decode_device(messages.encode(status)) == status
    with pytest.raises(MalformedError, match="only status, inventory and url"):
        messages.decode_device(messages.encode(messages.Cancel("ex-1")))
