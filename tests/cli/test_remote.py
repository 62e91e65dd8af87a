"""`ota commands ...` and `ota devices reboot`: the command is signed locally with --key (the API gets the
envelope, never the key), the refusals a device would make are caught before sending, watch exits 0
only if every run SUCCEEDED, and every new command explains itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.commands import Output
from cli.main import main
from cli.parser import build_parser
from otaformat import commands as oc
from otaformat.signing import generate_key, key_id, private_key_pem

from .conftest import FakeApi

NEW = [("commands", a) for a in ("send", "list", "show", "watch")] + [("devices", "reboot"),
                                                                       ("devices", "restart-agent")]


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Any]:
    private = generate_key()
    path = tmp_path / "publisher.key"
    path.write_bytes(private_key_pem(private))
    return path, private


def run(fake_api: FakeApi, output: Output, *argv: str) -> int:
    return main([f"--api={fake_api.url}", "--token=t", *argv], out=output, environ={})


def run_view(epn: str, state: str, **more: Any) -> dict[str, Any]:
    return {"epn": epn, "state": state, "exit_code": more.get("exit_code"), "reason": more.get("reason"),
            "output": more.get("output"), "truncated": more.get("truncated", False)}


def test_send_signs_locally_and_posts_only_the_envelope(fake_api: FakeApi, output: Output, key, tmp_path: Path) -> None:
    path, private = key
    script = tmp_path / "check.sh"
    script.write_text("uptime\n")
    fake_api.routes[("POST", "/commands")] = (201, {"command_id": "cmd-01", "type": "run-script", "devices": 2})
    assert run(fake_api, output, "commands", "send", "run-script", "--script", str(script), "--model", "m1",
               "--key", str(path)) == 0
    [sent] = fake_api.seen
    body = sent.json()
    assert set(body) == {"envelope"} and "PRIVATE" not in sent.body.decode()
    verified = oc.verify_signature(body["envelope"], {key_id(private.public_key()): private.public_key()})
    assert verified.type == "run-script" and verified.script == "uptime\n" and verified.model == "m1"
    assert "sent to 2 device(s)" in output.stream.getvalue()


@pytest.mark.parametrize(("argv", "error"), [
    (["commands", "send", "run-script", "--device", "d1"], "needs --script"),
    (["commands", "send", "reboot"], "either --device"),
    (["commands", "send", "reboot", "--device", "d1", "--model", "m"], "either --device"),
    (["commands", "send", "restart-app", "--device", "d1"], "app name"),
    (["commands", "send", "reboot", "--device", "a/b"], "EPN"),
])
def test_what_a_device_would_refuse_is_refused_before_sending(fake_api: FakeApi, output: Output, key, argv,
                                                               error: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(fake_api, output, *argv, "--key", str(key[0])) == 2
    assert error in capsys.readouterr().err and fake_api.seen == []


def test_devices_reboot_waits_for_the_result(fake_api: FakeApi, output: Output, key) -> None:
    fake_api.routes[("POST", "/commands")] = (201, {"command_id": "cmd-0a", "type": "reboot", "devices": 1})
    fake_api.routes[("GET", "/commands/cmd-0a")] = [
        (200, {"command_id": "cmd-0a", "counts": {"RUNNING": 1}}),
        (200, {"command_id": "cmd-0a", "counts": {"RUNNING": 1}}),  # unchanged: the runs are not read again
        (200, {"command_id": "cmd-0a", "counts": {"SUCCEEDED": 1}}),
    ]
    fake_api.routes[("GET", "/commands/cmd-0a/runs")] = [
        (200, {"runs": [run_view("pump-1", "RUNNING")], "next_cursor": None}),
        (200, {"runs": [run_view("pump-1", "SUCCEEDED", reason="device rebooted")], "next_cursor": None}),
    ]
    assert run(fake_api, output, "devices", "reboot", "pump-1", "--key", str(key[0])) == 0
    envelope = fake_api.seen[0].json()["envelope"]
    assert envelope["command"]["type"] == "reboot" and envelope["command"]["target"] == {"devices": ["pump-1"]}
    text = output.stream.getvalue()
    assert "pump-1               RUNNING" in text and "SUCCEEDED (device rebooted)" in text
    assert [s.path.partition("?")[0] for s in fake_api.seen[1:]] == [
        "/commands/cmd-0a", "/commands/cmd-0a/runs", "/commands/cmd-0a", "/commands/cmd-0a", "/commands/cmd-0a/runs"]


@pytest.mark.parametrize(("final", "code"), [("SUCCEEDED", 0), ("REJECTED", 1), ("TIMED_OUT", 1)])
def test_watch_exit_status_and_output(fake_api: FakeApi, output: Output, final: str, code: int) -> None:
    fake_api.routes[("GET", "/commands/cmd-0b")] = (200, {"command_id": "cmd-0b", "counts": {final: 1}})
    fake_api.routes[("GET", "/commands/cmd-0b/runs")] = (200, {"runs": [
        run_view("d1", "SUCCEEDED", exit_code=0, output="hello\n[... output truncated ...]\n", truncated=True)],
        "next_cursor": "c1"})  # the runs come in two pages: the CLI follows the cursor
    fake_api.routes[("GET", "/commands/cmd-0b/runs?cursor=c1")] = (200, {"runs": [run_view("d2", final)],
                                                                         "next_cursor": None})
    assert run(fake_api, output, "commands", "watch", "cmd-0b") == code
    assert "--- d1 output (truncated) ---" in output.stream.getvalue()
    assert f"d2                   {final}" in output.stream.getvalue()


def test_list_and_show_follow_every_cursor(fake_api: FakeApi, output: Output) -> None:
    fake_api.routes[("GET", "/commands")] = (200, {"commands": [
        {"command_id": "cmd-0c", "type": "reboot", "created_at": "2026-12-01T10:00:00.000Z"}], "next_cursor": "p2"})
    fake_api.routes[("GET", "/commands?cursor=p2")] = (200, {"commands": [
        {"command_id": "cmd-0d", "type": "reboot", "created_at": "2026-12-01T11:00:00.000Z"}], "next_cursor": None})
    assert run(fake_api, output, "--json", "commands", "list") == 0
    listed = json.loads(output.stream.getvalue())
    assert [c["command_id"] for c in listed["commands"]] == ["cmd-0c", "cmd-0d"] and listed["next_cursor"] is None
    output.stream.truncate(0)
    output.stream.seek(0)
    assert run(fake_api, output, "commands", "list") == 0  # the table: newest first
    text = output.stream.getvalue()
    assert text.index("cmd-0d") < text.index("cmd-0c")
    fake_api.routes[("GET", "/commands/cmd-0c")] = (200, {"command_id": "cmd-0c", "counts": {"QUEUED": 2}})
    fake_api.routes[("GET", "/commands/cmd-0c/runs")] = (200, {"runs": [run_view("d1", "QUEUED")], "next_cursor": "r2"})
    fake_api.routes[("GET", "/commands/cmd-0c/runs?cursor=r2")] = (200, {"runs": [run_view("d2", "QUEUED")],
                                                                         "next_cursor": None})
    output.stream.truncate(0)
    output.stream.seek(0)
    assert run(fake_api, output, "--json", "commands", "show", "cmd-0c") == 0
    shown = json.loads(output.stream.getvalue())
    assert shown["counts"] == {"QUEUED": 2} and [r["epn"] for r in shown["runs"]] == ["d1", "d2"]


@pytest.mark.parametrize("command", NEW, ids=" ".join)
def test_every_new_command_has_an_example_and_help(command, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    text = capsys.readouterr().out
    assert "example" in text and f"ota {' '.join(command)}" in text.split("example")[1]


def test_releases_publish_and_list(fake_api: FakeApi, output: Output) -> None:
    fake_api.routes[("POST", "/releases")] = (201, {"release_id": "demo@1.0.5:m1:stable", "package_id": "up-1",
                                                    "offered": 3})
    assert run(fake_api, output, "releases", "publish", "demo", "1.0.5", "--model", "m1", "--channel", "stable") == 0
    assert fake_api.seen[0].json() == {"app": "demo", "version": "1.0.5", "model": "m1", "channel": "stable"}
    assert "offered now to 3 device(s)" in output.stream.getvalue()
    fake_api.routes[("GET", "/releases")] = (200, {"releases": [{"release_id": "demo@1.0.5:m1:stable"}],
                                                   "next_cursor": "p2"})
    fake_api.routes[("GET", "/releases?cursor=p2")] = (200, {"releases": [{"release_id": "demo@1.0.6:m1:stable"}],
                                                             "next_cursor": None})
    output.stream.truncate(0)
    output.stream.seek(0)
    assert run(fake_api, output, "--json", "releases", "list") == 0
    assert [r["release_id"] for r in json.loads(output.stream.getvalue())["releases"]] == [
        "demo@1.0.5:m1:stable", "demo@1.0.6:m1:stable"]
    fake_api.routes[("GET", "/releases?limit=1")] = fake_api.routes[("GET", "/releases")]
    output.stream.truncate(0)
    output.stream.seek(0)
    assert run(fake_api, output, "--json", "releases", "list", "--limit", "1") == 0
    assert fake_api.seen[-1].path == "/releases?limit=1"  # one page, not followed further
    assert json.loads(output.stream.getvalue())["next_cursor"] == "p2"


@pytest.mark.parametrize("command", [("releases", "publish"), ("releases", "list")], ids=" ".join)
def test_release_commands_explain_themselves(command, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    text = capsys.readouterr().out
    assert "example" in text and f"ota {' '.join(command)}" in text.split("example")[1]
