"""Isolation and rejection on the full stack: a device certificate reads only its own topics, revoked and
foreign certificates cannot connect, and a package the scan rejects never reaches the repository bucket."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from local import mosquitto, stack
from local.ca import Issued, LocalCA
from local.scenario import Agent, Session, strip_signatures
from otaformat import topics
from tests.local.conftest import Client

from .conftest import (
    MODEL,
    WAIT,
    Release,
    agent_identity,
    create_job,
    operator,
    terminal,
    unique_epn,
    wait_execution,
    wait_registered,
)

pytestmark = pytest.mark.e2e
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _mosquitto_sub(program: str, state: dict[str, Any], issued: Issued, topic: str,
                   seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [program, "-h", "127.0.0.1", "-p", str(state["mqtt"]["port"]), "--cafile", state["mqtt"]["ca"],
         "--cert", str(issued.cert), "--key", str(issued.key), "-t", topic, "-q", "1", "-v", "-W", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_device_certificate_reads_nothing_of_another_device(
        on_stack: Session, release: Release, mqtt_as: Callable[..., Client | str]) -> None:
    """Two spies (one through paho, one through mosquitto_sub: each identity connects once, since the
    broker takes the client id from the certificate) and the operator's mosquitto_sub as the control."""
    mosquitto_sub = shutil.which("mosquitto_sub") or mosquitto.find_program("mosquitto_sub")
    assert mosquitto_sub, "mosquitto_sub is not installed: run 'python -m local.osdeps'"
    spy_a, spy_b, victim = (on_stack.start_agent(unique_epn(name), MODEL, release.pub)
                            for name in ("spy-a", "spy-b", "victim"))
    wait_registered(on_stack, spy_a, spy_b, victim)
    on_stack.stop_agents()  # the spies' certificates are used below, without their agents
    on_stack.restart_agent(victim)
    spy = mqtt_as(agent_identity(spy_a))
    assert isinstance(spy, Client), spy
    wanted = [topics.topic(victim.epn, leaf) for leaf in ("job", "blk", "cmd", "ack", "get", "status")]
    spy.client.subscribe([(t, 1) for t in [*wanted, "ota/#", "ota/+/blk"]])
    sub = _mosquitto_sub(mosquitto_sub, on_stack.state, agent_identity(spy_b), f"ota/{victim.epn}/#", int(WAIT))
    control = _mosquitto_sub(mosquitto_sub, on_stack.state, operator(on_stack.state), f"ota/{victim.epn}/job",
                             int(WAIT))
    time.sleep(1.0)  # the subscriptions are in place before the job starts
    job_id = create_job(on_stack, release.upload_id, [victim.epn])
    view = wait_execution(on_stack, job_id, victim.epn, terminal)
    assert view["state"] == "SUCCEEDED", view
    assert sub.poll() is None, "mosquitto_sub with the spy's certificate did not stay connected"
    for process in (sub, control):
        process.terminate()
    out, _ = sub.communicate(timeout=WAIT)
    seen, _ = control.communicate(timeout=WAIT)
    assert f"ota/{victim.epn}/job" in seen, "the operator's mosquitto_sub saw no job document: the test proves nothing"
    assert [t for t, _ in spy.received if victim.epn in t] == []
    assert victim.epn not in out


def _forbidden_after_revocation(on_stack: Session, agent: Agent) -> Issued:
    assert on_stack.ota("devices", "rm", agent.epn).code == 0
    return agent_identity(agent)


def _foreign(on_stack: Session, agent: Agent) -> Issued:
    other = LocalCA.create_or_load(on_stack.work / "foreign-ca")  # same CN, another CA
    return other.issue(on_stack.work / "foreign", "device", agent.epn)


@pytest.mark.parametrize("identity", [_forbidden_after_revocation, _foreign], ids=["revoked", "foreign-ca"])
def test_a_revoked_or_foreign_certificate_cannot_connect(
        on_stack: Session, release: Release, mqtt_as: Callable[..., Client | str],
        identity: Callable[[Session, Agent], Issued]) -> None:
    agent = on_stack.start_agent(unique_epn("cut"), MODEL, release.pub)
    wait_registered(on_stack, agent)
    on_stack.stop_agents()
    before = mqtt_as(agent_identity(agent))
    assert isinstance(before, Client), f"the genuine certificate must connect first: {before}"
    before.client.disconnect()
    issued = identity(on_stack, agent)
    outcome: Client | str = before
    deadline = time.monotonic() + WAIT  # a revocation needs the bridge to make mosquitto reload the CRL
    while isinstance(outcome, Client) and time.monotonic() < deadline:
        time.sleep(0.5)
        outcome = mqtt_as(issued)
        if isinstance(outcome, Client):
            outcome.client.disconnect()
    assert isinstance(outcome, str), "the certificate could still connect"


def _repository(state: dict[str, Any]) -> set[str]:
    s3 = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "s3", region_name="us-east-1", endpoint_url=state["moto_url"])
    bucket = stack.RESOURCE_NAMES["OTA_REPOSITORY_BUCKET"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _unsigned(on_stack: Session, release: Release) -> Path:
    return strip_signatures(release.package, on_stack.work / "unsigned.otapkg")


def _tampered(on_stack: Session, release: Release) -> Path:
    data = bytearray(release.package.read_bytes())
    data[-100] ^= 0xFF
    (on_stack.work / "tampered.otapkg").write_bytes(bytes(data))
    return on_stack.work / "tampered.otapkg"


def _fixture(name: str) -> Callable[[Session, Release], Path]:
    return lambda _s, _r: FIXTURES / name


@pytest.mark.parametrize(("make", "reason"), [
    (_unsigned, "unsigned"),
    (_tampered, "hash"),
    (_fixture("untrusted-key.otapkg"), "key"),
    (_fixture("hostile-dotdot-path.otapkg"), ""),
], ids=["unsigned", "tampered", "untrusted-key", "hostile-path"])
def test_a_rejected_package_never_reaches_the_repository(
        on_stack: Session, release: Release, make: Callable[[Session, Release], Path], reason: str) -> None:
    assert release.upload_id  # the release is in the repository already: the listing is not vacuous
    before = _repository(on_stack.state)
    assert before, "the repository bucket lists nothing: the listing proves nothing"
    done = on_stack.ota("--json", "packages", "upload", str(make(on_stack, release)), "--timeout", str(WAIT),
                        "--no-local-check")  # the scan is what is under test
    package = done.json()
    assert (done.code, package["state"]) == (1, "REJECTED"), package
    assert package["reasons"] and reason in " ".join(package["reasons"]).lower(), package["reasons"]
    assert package.get("repository_key") is None
    assert _repository(on_stack.state) == before
