"""The whole local stack with real processes: API, bridge, moto, mosquitto, an agent, and the `ota` command."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from cli.commands import Output
from cli.main import main as ota
from local import procs, stack
from local.ca import Issued, make_csr
from local.sqspump import SqsPump

from .conftest import WAIT, Client, connect


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("e2e") / "stack"
    state = stack.up(stack.StackOptions(directory, sweep_every=1.0))
    yield state
    pids = [p["pid"] for p in state["processes"]]
    assert stack.stop_all(directory) == ["bridge", "api", "mosquitto", "moto"]
    assert [pid for pid in pids if procs.is_alive(pid)] == []


def run_ota(state: dict[str, Any], *argv: str, token: str | None = None) -> tuple[int, str]:
    out = Output(stream=io.StringIO())
    code = ota(["--api", state["api_url"], "--token", token or state["token"], *argv], out=out)
    return code, out.stream.getvalue()  # type: ignore[attr-defined]


def _pack(*argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", "packager", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def published(full_stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A registered publisher key and an AVAILABLE package for model e2e-m."""
    work = tmp_path_factory.mktemp("pkg")
    (work / "src" / "bin").mkdir(parents=True)
    (work / "src" / "bin" / "app").write_bytes(b"payload " * 20000)
    _pack("keygen", "--out", str(work / "keys"))
    _pack("build", str(work / "src"), "--app", "e2e", "--version", "1.0.0", "--model", "e2e-m", "--key",
          str(work / "keys" / "publisher.key"), "--out", str(work / "e2e.otapkg"))
    code, _ = run_ota(full_stack, "keys", "add", str(work / "keys" / "publisher.pub"), "--name", "e2e")
    assert code == 0
    code, text = run_ota(full_stack, "--json", "packages", "upload", str(work / "e2e.otapkg"), "--timeout", "120")
    assert code == 0, text
    return {"work": work, "package": json.loads(text)}


def test_an_agent_registers_and_installs_a_package_rolled_out_by_model(
        full_stack: dict[str, Any], published: dict[str, Any], tmp_path: Path) -> None:
    code, text = run_ota(full_stack, "--json", "devices", "add", "e2e-dev-1", "--model", "e2e-m")
    assert code == 0
    token = json.loads(text)["registration_token"]
    config = tmp_path / "agent.toml"
    config.write_text(f'epn = "e2e-dev-1"\nmodel = "e2e-m"\ndata_dir = "data"\ninstall_root = "root"\n'
                      f'[registration]\napi_url = "{full_stack["api_url"]}"\ntoken = "{token}"\n'
                      f'[trust]\npublisher_keys = ["{published["work"] / "keys" / "publisher.pub"}"]\n')
    agent = procs.start("agent", [sys.executable, "-m", "agent", "--config", str(config)], tmp_path / "agent.log",
                        cwd=stack.PROJECT_DIR)
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            device = json.loads(run_ota(full_stack, "--json", "devices", "show", "e2e-dev-1")[1])
            if device["state"] == "REGISTERED":
                break
            assert procs.is_alive(agent.pid), procs.log_tail(agent)
            time.sleep(0.2)
        code, text = run_ota(full_stack, "--json", "jobs", "create", "--package",
                             published["package"]["upload_id"], "--model", "e2e-m", "--block-size", "4096",
                             "--window", "16")
        assert code == 0, text
        job_id = json.loads(text)["job_id"]
        code, text = run_ota(full_stack, "jobs", "watch", job_id, "--interval", "0.2", "--timeout", "120")
        assert code == 0, text + procs.log_tail(agent)
        assert "e2e-dev-1" in text and "SUCCEEDED" in text
        device = json.loads(run_ota(full_stack, "--json", "devices", "show", "e2e-dev-1")[1])
        assert device["apps"].get("e2e") == "1.0.0"
    finally:
        procs.stop(agent)


def test_a_tampered_package_is_rejected_with_reasons(full_stack: dict[str, Any], published: dict[str, Any]) -> None:
    data = bytearray((published["work"] / "e2e.otapkg").read_bytes())
    data[len(data) // 2] ^= 0x55
    tampered = published["work"] / "tampered.otapkg"
    tampered.write_bytes(bytes(data))
    code, text = run_ota(full_stack, "packages", "upload", str(tampered), "--timeout", "120")
    assert code == 1
    assert "REJECTED" in text and "  - " in text


@pytest.mark.parametrize(("token", "argv"), [("wrong", ["devices", "list"]), ("", ["keys", "list"])])
def test_the_api_refuses_a_wrong_operator_token(full_stack: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                token: str, argv: list[str]) -> None:
    out = Output(stream=io.StringIO())
    assert ota(["--api", full_stack["api_url"], "--token", token or "x" * 43, *argv], out=out) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_deregistered_device_can_no_longer_connect(full_stack: dict[str, Any], tmp_path: Path) -> None:
    code, text = run_ota(full_stack, "--json", "devices", "add", "e2e-rm", "--model", "e2e-m")
    assert code == 0
    csr = make_csr(tmp_path / "device.key", "e2e-rm")
    reply = requests.post(f"{full_stack['api_url']}/devices/e2e-rm/register", timeout=WAIT,
                          json={"token": json.loads(text)["registration_token"], "csr": csr.decode(),
                                "agent_version": "1.0.0", "apps": {}})
    assert reply.status_code == 200, reply.text
    (tmp_path / "device.pem").write_text(reply.json()["certificate"])
    issued = Issued(tmp_path / "device.pem", tmp_path / "device.key")
    before = connect(full_stack["mqtt"]["port"], Path(full_stack["mqtt"]["ca"]), issued)
    assert isinstance(before, Client), before
    before.client.disconnect()
    before.client.loop_stop()
    assert run_ota(full_stack, "devices", "rm", "e2e-rm")[0] == 0
    deadline = time.monotonic() + WAIT  # the bridge sees the new CRL and makes mosquitto reload it
    outcome: Client | str = before
    while isinstance(outcome, Client) and time.monotonic() < deadline:
        time.sleep(0.2)
        outcome = connect(full_stack["mqtt"]["port"], Path(full_stack["mqtt"]["ca"]), issued)
        if isinstance(outcome, Client):
            outcome.client.disconnect()
            outcome.client.loop_stop()
    assert isinstance(outcome, str), "a deregistered device could still connect"


def test_a_message_whose_handler_always_fails_ends_in_the_dead_letter_queue(full_stack: dict[str, Any]) -> None:
    from chalicelib.adapters.provision import ensure_queue_with_dlq

    sqs = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "sqs", region_name="us-east-1", endpoint_url=full_stack["moto_url"])
    url, dlq_url = ensure_queue_with_dlq(sqs, "poison-test")
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    calls: list[int] = []

    def broken(event: dict[str, Any], _context: Any) -> None:
        calls.append(len(event["Records"]))
        raise RuntimeError("always fails")

    pump = SqsPump(sqs, "poison-test", broken, function_name="poison", retry_delay=0, wait_seconds=1)
    deadline = time.monotonic() + WAIT
    dead: list[dict[str, Any]] = []
    while not dead and time.monotonic() < deadline:
        pump.poll_once()
        dead = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=0).get("Messages", [])
    assert [m["Body"] for m in dead] == ["poison"]
    assert len(calls) == 3  # maxReceiveCount
