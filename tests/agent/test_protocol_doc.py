"""docs/protocol.md's worked example is produced by the code: run its check block and its hex dump."""

from __future__ import annotations

import re
from pathlib import Path

from otaformat import messages, wire

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_python_check_block_runs():
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the worked example lost its python block"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})


def test_hex_dump_matches_encode_frame():
    text = DOC.read_text()
    dump = re.search(r"gives 23 bytes:\n\n```\n(.*?)```", text, re.S)
    assert dump
    hex_bytes = "".join(line.split("  ")[0].replace(" ", "") for line in dump.group(1).strip().splitlines())
    assert bytes.fromhex(hex_bytes) == wire.encode_frame(42, 2, 3, b"last block")


def test_quoted_messages_are_what_the_codecs_produce():
    text = DOC.read_text()
    expected = [
        wire.encode_request(wire.make_request("exec-1", 42, {0, 1, 2})),
        wire.encode_ack(wire.make_ack("exec-1", 42, range(10), 10)),
        messages.encode(messages.UrlRefresh("exec-1")),
        messages.encode(messages.Cancel("exec-1")),
        messages.encode(messages.Inventory("1.0.0", "m1", {"demo": "1.0.0"})),
        messages.encode(messages.Status("exec-1", "FAILED", None,
                                        "download stalled: no new data for 120 s (10/40 blocks)", 7, 10)),
    ]
    for payload in expected:
        assert payload.decode() in text
