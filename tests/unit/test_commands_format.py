"""otaformat.commands: the command schema, signatures, the result message and the visible output cut."""

from __future__ import annotations

import pytest

from otaformat import commands as oc
from otaformat.errors import MalformedError, VerificationError
from otaformat.signing import generate_key, key_id

GOOD = {"id": "cmd-0123456789abcdef", "type": "run-script", "target": {"devices": ["dev-1"]}, "args": {},
        "script": "uptime", "timeout": 30, "issued": "2026-12-01T10:00:00Z", "expires": "2026-12-01T11:00:00Z"}


@pytest.mark.parametrize(("change", "said"), [
    ({"id": "cmd-XYZ"}, "field 'id'"),
    ({"id": "job-0123456789abcdef"}, "field 'id'"),
    ({"type": "format-disk"}, "field 'type'"),
    ({"target": {"devices": [], "model": "m"}}, "field 'target'"),
    ({"target": {"devices": []}}, "target.devices"),
    ({"target": {"devices": ["a/b"]}}, "EPN"),
    ({"script": None}, "field 'script'"),
    ({"script": "x" * (oc.MAX_SCRIPT + 1)}, "field 'script'"),
    ({"type": "reboot"}, "only allowed for run-script"),
    ({"args": {"app": "demo"}}, "not an argument of run-script"),
    ({"timeout": 0}, "field 'timeout'"),
    ({"timeout": True}, "field 'timeout'"),
    ({"expires": "2026-12-09T10:00:00Z"}, "at most 7 days"),
    ({"expires": "2026-12-01T09:00:00Z"}, "after 'issued'"),
    ({"issued": 5}, "UTC timestamps"),
    ({"extra": 1}, "unknown field"),
])
def test_malformed_commands_are_refused_naming_the_field(change, said):
    with pytest.raises(MalformedError) as err:
        oc.Command.from_dict({**GOOD, **change})
    assert said in err.value.reason


def test_restart_app_and_collect_logs_arguments():
    assert oc.Command.from_dict({**GOOD, "type": "restart-app", "script": None, "args": {"app": "demo"}}).arg("app") \
        == "demo"
    with pytest.raises(MalformedError):
        oc.Command.from_dict({**GOOD, "type": "collect-logs", "script": None, "args": {"max_bytes": "99999"}})


def test_a_signature_covers_every_field():
    key = generate_key()
    trusted = {key_id(key.public_key()): key.public_key()}
    envelope = oc.sign_command(oc.Command.from_dict(GOOD), key)
    assert oc.verify_signature(envelope, trusted).script == "uptime"
    for field, value in (("timeout", 31), ("target", {"model": "m1"}), ("expires", "2026-12-01T12:00:00Z")):
        forged = {**envelope, "command": {**envelope["command"], field: value}}
        with pytest.raises(VerificationError) as err:
            oc.verify_signature(forged, trusted)
        assert err.value.code == "bad-signature"


@pytest.mark.parametrize("payload", [
    b'{"v":1,"type":"cmd-result","id":"cmd-0123456789abcdef","state":"QUEUED","seq":1}',
    b'{"v":1,"type":"cmd-result","id":"x","state":"SUCCEEDED","seq":1}',
    b'{"v":1,"type":"cmd-result","id":"cmd-0123456789abcdef","state":"SUCCEEDED","seq":-1}',
    b'{"v":1,"type":"cmd-result","id":"cmd-0123456789abcdef","state":"SUCCEEDED","seq":1,"exit_code":999}',
    b'{"v":1,"type":"cmd-result","id":"cmd-0123456789abcdef","state":"SUCCEEDED","seq":1,"more":1}',
    b'{"v":1,"type":"cmd-result","id":"cmd-0123456789abcdef","state":"SUCCEEDED","seq":1,"truncated":"no"}',
    b"[" * 100,
])
def test_malformed_results_are_refused(payload):
    with pytest.raises(MalformedError):
        oc.decode_result(payload)


@pytest.mark.parametrize("size", [600, 5000, 10**6])
def test_a_cut_output_stays_within_its_limit_and_says_so(size):
    text = oc.cut_output(b"h" * 512, b"t" * 512, size, 512)
    assert len(text.encode()) <= 512 and "output truncated" in text and text.startswith("h") and text.endswith("t")
    assert f"{size - 2 * text.count('h')} bytes dropped" in text
