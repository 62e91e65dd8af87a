"""The stack's API and bridge on their own: operator token checks, and the SQS redrive to the dead-letter
queue. (Rollouts, rejected uploads and revocation are in test_scenario.py and test_security.py.)"""

from __future__ import annotations

import io
import time
from typing import Any

import boto3
import pytest

from chalicelib.adapters.provision import ensure_queue_with_dlq
from cli.commands import Output
from cli.main import main as ota
from local.sqspump import SqsPump

from .conftest import WAIT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("token", "argv"), [("wrong", ["devices", "list"]), ("", ["keys", "list"])])
def test_the_api_refuses_a_wrong_operator_token(e2e_stack: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                token: str, argv: list[str]) -> None:
    out = Output(stream=io.StringIO())
    assert ota(["--api", e2e_stack["api_url"], "--token", token or "x" * 43, *argv], out=out) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_a_message_whose_handler_always_fails_ends_in_the_dead_letter_queue(e2e_stack: dict[str, Any]) -> None:
    sqs = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "sqs", region_name="us-east-1", endpoint_url=e2e_stack["moto_url"])
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
