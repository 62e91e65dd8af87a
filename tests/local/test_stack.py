"""Real processes: moto server, and the stack (moto + mosquitto + bridge) forwarding like the IoT rule."""

from __future__ import annotations

import base64
import json
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local import cli, motoserver, procs, stack
from local.ca import LocalCA

from .conftest import WAIT, Client, connect


def _processes_logging_under(directory: Path) -> list[int]:
    """PIDs of live processes whose stdout is a file under `directory` (what the stack starts)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            target = (entry / "fd" / "1").readlink()
        except OSError:
            continue
        if str(target).startswith(str(directory)) and procs.is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_moto_server_starts_answers_and_stops(tmp_path: Path) -> None:
    started, port = motoserver.start(tmp_path)
    try:
        assert motoserver.answers(port)
    finally:
        assert procs.stop(started)
    assert not procs.is_alive(started.pid)
    assert not motoserver.answers(port)


@pytest.fixture
def forwarding_stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """moto, mosquitto and a bridge that only forwards (no Chalice handlers, no API)."""
    state = stack.up(stack.StackOptions(tmp_path / "stack", api=False, handlers=False))
    yield state
    stack.stop_all(tmp_path / "stack")


def _sqs(state: dict[str, Any]) -> Any:
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "sqs", region_name="us-east-1", endpoint_url=state["moto_url"])


@pytest.mark.parametrize(("leaf", "payload"), [("status", b'{"v":1}'), ("ack", b"\x01\x00\xff"),
                                               ("cmd/result", b"done")])
def test_mqtt_device_message_reaches_the_device_queue_in_iot_rule_shape(
        forwarding_stack: dict[str, Any], tmp_path: Path, leaf: str, payload: bytes) -> None:
    state = forwarding_stack
    ca = LocalCA.create_or_load(Path(state["directory"]) / "ca")
    device = connect(state["mqtt"]["port"], ca.cert_path, ca.issue(tmp_path / "dev", "x", "x"))
    assert isinstance(device, Client), device
    try:
        device.publish(f"ota/x/{leaf}", payload)
    finally:
        device.client.disconnect()
        device.client.loop_stop()
    sqs = _sqs(state)
    url = sqs.get_queue_url(QueueName=state["env"]["OTA_DEVICE_QUEUE"])["QueueUrl"]
    deadline = time.monotonic() + WAIT
    messages: list[dict[str, Any]] = []
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert set(body) == {"topic", "payload_b64", "received_at"}
    assert body["topic"] == f"ota/x/{leaf}"
    assert base64.b64decode(body["payload_b64"]) == payload
    assert abs(body["received_at"] / 1000 - time.time()) < 3600


def test_stack_file_is_private_and_token_never_in_the_env(forwarding_stack: dict[str, Any]) -> None:
    path = stack.stack_file(Path(forwarding_stack["directory"]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["token"] and saved["token"] not in json.dumps(saved["env"])
    assert len(saved["env"]["OTA_OPERATOR_TOKEN_SHA256"]) == 64


def test_second_up_in_the_same_directory_is_refused(forwarding_stack: dict[str, Any]) -> None:
    with pytest.raises(stack.StackError, match="already runs"):
        stack.up(stack.StackOptions(Path(forwarding_stack["directory"]), api=False, handlers=False))


def test_down_leaves_no_process_behind(tmp_path: Path) -> None:
    directory = tmp_path / "stack"
    state = stack.up(stack.StackOptions(directory, api=False, handlers=False))
    pids = [p["pid"] for p in state["processes"]]
    assert [p["name"] for p in state["processes"]] == ["moto", "mosquitto", "bridge"]
    assert all(procs.is_alive(pid) for pid in pids)
    assert sorted(_processes_logging_under(directory)) == sorted(pids)
    assert cli.main(["down", "--dir", str(directory)]) == 0
    assert not [pid for pid in pids if procs.is_alive(pid)]
    assert _processes_logging_under(directory) == []
    assert not stack.stack_file(directory).exists()


def test_a_failing_start_stops_what_had_started(tmp_path: Path) -> None:
    directory = tmp_path / "stack"
    (tmp_path / "no-project").mkdir()  # no app.py: the API cannot start
    broken = stack.StackOptions(directory, api=True, handlers=False, project_dir=tmp_path / "no-project",
                                timeout=30)
    try:
        with pytest.raises(procs.ProcessError, match="api exited"):
            stack.up(broken)
        assert _processes_logging_under(directory) == []
    finally:
        stack.stop_all(directory)


@pytest.mark.parametrize(("argv", "code", "out"), [
    (["down"], 0, "nothing runs"),
    (["env"], 1, "no stack"),
    (["status"], 1, "no stack"),
])
def test_ota_local_without_a_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                   code: int, out: str) -> None:
    assert cli.main([*argv, "--dir", str(tmp_path / "none")]) == code
    captured = capsys.readouterr()
    assert out in captured.out + captured.err


def test_env_gives_processes_run_by_hand_the_operator_identity(forwarding_stack: dict[str, Any]) -> None:
    lines = cli.env_lines(forwarding_stack)
    cert = forwarding_stack["certs"]["operator"]["cert"]
    assert f"export OTA_MQTT_CLIENT_CERT={cert}" in lines
    assert forwarding_stack["env"]["OTA_MQTT_CLIENT_CERT"] != cert  # the API keeps its own


def test_env_lines_can_be_evaluated_by_a_shell() -> None:
    lines = cli.env_lines({"env": {"OTA_X": "a b'c"}, "api_url": "http://127.0.0.1:1", "token": "t"})
    assert lines == ["export OTA_API_URL=http://127.0.0.1:1", "export OTA_TOKEN=t",
                     "export OTA_X='a b'\"'\"'c'"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("when", ["starting", "running"])
def test_foreground_stack_stops_everything_on_ctrl_c(tmp_path: Path, sig: signal.Signals, when: str) -> None:
    directory = tmp_path / "fg"
    up = subprocess.Popen([sys.executable, "-m", "local.cli", "up", "--foreground", "--dir", str(directory)],
                          cwd=stack.PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert up.stdout is not None
    try:
        if when == "running":
            lines = [up.stdout.readline()]
            while lines[-1] and not lines[-1].startswith("running in the foreground"):
                lines.append(up.stdout.readline())
            assert lines[-1], "".join(lines)
        else:
            deadline = time.monotonic() + 60
            while not stack.running(directory) and time.monotonic() < deadline:
                time.sleep(0.02)
        pids = [p.pid for p in stack.running(directory)]
        assert pids
        up.send_signal(sig)
        out, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        stack.stop_all(directory)  # whatever happened above, leave nothing running
    if when == "running":
        assert up.returncode == 0, out
        assert "stopping: bridge, rule, api, mosquitto, moto" in out
    else:
        assert up.returncode == 130, out
    assert [pid for pid in pids if procs.is_alive(pid)] == []
    assert _processes_logging_under(directory) == []


def test_stop_all_also_stops_a_process_that_was_never_recorded(tmp_path: Path) -> None:
    directory = tmp_path / "stack"
    stray = procs.start("stray", [sys.executable, "-c", "import time; time.sleep(300)"], directory / "stray.log")
    elsewhere = procs.start("other", [sys.executable, "-c", "import time; time.sleep(300)"], tmp_path / "other.log")
    try:
        assert [p.pid for p in procs.logging_under(directory)] == [stray.pid]
        assert stack.stop_all(directory) == [f"pid {stray.pid}"]
        assert not procs.is_alive(stray.pid)
        assert procs.is_alive(elsewhere.pid)
    finally:
        procs.stop(stray)
        procs.stop(elsewhere)
