"""mosquitto as IoT Core, started for real: mTLS, per-device ACL (THREATS 18), CRL, client-id takeover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local import mosquitto, procs
from local.bridge import CrlWatcher
from local.ca import LocalCA

from .conftest import CLOUD, WAIT, Broker, Client, connect

DEVICE_WRITES = ["ack", "get", "status", "cmd/result"]
DEVICE_READS = ["job", "blk", "cmd"]


@pytest.mark.parametrize("leaf", DEVICE_WRITES)
def test_device_writes_its_own_topics_but_not_another_devices(connect_as, leaf: str) -> None:
    cloud = connect_as(CLOUD)
    cloud.subscribe("ota/#")
    device = connect_as("dev-a")
    device.publish(f"ota/dev-b/{leaf}", b"forged")  # denied: another device's topic
    device.publish(f"ota/dev-a/{leaf}", b"mine")  # allowed, and delivered after the denied one would be
    assert cloud.wait_for(lambda got: any(t == f"ota/dev-a/{leaf}" for t, _ in got))
    assert [t for t, _ in cloud.received] == [f"ota/dev-a/{leaf}"]


@pytest.mark.parametrize("leaf", DEVICE_READS)
def test_device_cannot_write_the_topics_it_only_reads(connect_as, leaf: str) -> None:
    cloud = connect_as(CLOUD)
    cloud.subscribe("ota/#")
    device = connect_as("dev-a")
    device.publish(f"ota/dev-a/{leaf}", b"forged job")
    device.publish("ota/dev-a/status", b"marker")
    assert cloud.wait_for(lambda got: any(t == "ota/dev-a/status" for t, _ in got))
    assert [t for t, _ in cloud.received] == ["ota/dev-a/status"]


@pytest.mark.parametrize("leaf", DEVICE_READS)
def test_device_reads_its_own_topics_and_nothing_of_another_device(connect_as, leaf: str) -> None:
    device = connect_as("dev-a")
    device.subscribe(f"ota/dev-b/{leaf}", f"ota/dev-a/{leaf}", "ota/+/ack", "ota/#")
    cloud = connect_as(CLOUD)
    other = connect_as("dev-b")
    cloud.publish(f"ota/dev-b/{leaf}", b"for b")
    other.publish("ota/dev-b/ack", b"b's ack")
    cloud.publish(f"ota/dev-a/{leaf}", b"for a")
    assert device.wait_for(lambda got: (f"ota/dev-a/{leaf}", b"for a") in got)
    assert {t for t, _ in device.received} == {f"ota/dev-a/{leaf}"}


def test_mosquitto_sub_with_the_device_certificate_gets_only_its_own_topics(
        broker: Broker, connect_as, mosquitto_sub: str) -> None:
    device = broker.ca.issue(broker.certs, "sub-dev", "dev-a")
    cmd = [mosquitto_sub, "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", str(broker.ca.cert_path),
           "--cert", str(device.cert), "--key", str(device.key), "-q", "1", "-v", "-C", "3",
           "-t", "ota/dev-b/job", "-t", "ota/dev-b/cmd", "-t", "ota/dev-a/job"]
    sub = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cloud = connect_as(CLOUD)
    try:
        deadline = time.monotonic() + WAIT
        while sub.poll() is None and time.monotonic() < deadline:  # B first in every round
            cloud.publish("ota/dev-b/job", b"b-job")
            cloud.publish("ota/dev-b/cmd", b"b-cmd")
            cloud.publish("ota/dev-a/job", b"a-job")
            time.sleep(0.05)
        out, err = sub.communicate(timeout=WAIT)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, err
    assert out.splitlines() == ["ota/dev-a/job a-job"] * 3


def test_certificate_from_a_foreign_ca_cannot_connect(broker: Broker, tmp_path: Path) -> None:
    foreign = LocalCA.create_or_load(tmp_path / "foreign-ca")
    issued = foreign.issue(tmp_path / "foreign", "dev", "dev-a")
    outcome = connect(broker.port, broker.ca.cert_path, issued)
    assert isinstance(outcome, str), "a foreign certificate was accepted"


def test_foreign_certificate_is_refused_to_mosquitto_sub_too(broker: Broker, tmp_path: Path,
                                                             mosquitto_sub: str) -> None:
    foreign = LocalCA.create_or_load(tmp_path / "foreign-ca").issue(tmp_path / "foreign", "dev", "dev-a")
    done = subprocess.run([mosquitto_sub, "-h", "127.0.0.1", "-p", str(broker.port), "--cafile",
                           str(broker.ca.cert_path), "--cert", str(foreign.cert), "--key", str(foreign.key),
                           "-t", "ota/dev-a/job", "-C", "1", "-W", "20"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


@pytest.mark.parametrize("reload", ["restart", "sighup"])
def test_revoked_certificate_cannot_connect_after_reload(broker: Broker, tmp_path: Path, reload: str) -> None:
    issued = broker.ca.issue(broker.certs, "to-revoke", "dev-r")
    before = connect(broker.port, broker.ca.cert_path, issued)
    assert isinstance(before, Client), before
    before.client.disconnect()
    before.client.loop_stop()
    broker.ca.revoke(issued.cert.read_bytes())
    if reload == "restart":
        broker.restart(tmp_path / "mosquitto")
    else:
        os.kill(broker.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    outcome = connect(broker.port, broker.ca.cert_path, issued)
    while isinstance(outcome, Client) and time.monotonic() < deadline:  # SIGHUP is handled asynchronously
        outcome.client.disconnect()
        outcome.client.loop_stop()
        time.sleep(0.1)
        outcome = connect(broker.port, broker.ca.cert_path, issued)
    assert isinstance(outcome, str), "a revoked certificate could still connect"
    other = connect(broker.port, broker.ca.cert_path, broker.ca.issue(broker.certs, "ok", "dev-ok"))
    assert isinstance(other, Client), other
    other.client.disconnect()
    other.client.loop_stop()


def test_a_device_cannot_kick_another_off_by_reusing_its_client_id(broker: Broker, connect_as) -> None:
    victim = connect(broker.port, broker.ca.cert_path, broker.ca.issue(broker.certs, "victim", "dev-v"),
                     client_id="dev-v")
    assert isinstance(victim, Client), victim
    victim.subscribe("ota/dev-v/job")  # a clean session: a kicked client would lose this subscription
    intruder = connect(broker.port, broker.ca.cert_path, broker.ca.issue(broker.certs, "intruder", "dev-i"),
                       client_id="dev-v")
    assert isinstance(intruder, Client), intruder
    try:
        cloud = connect_as(CLOUD)
        cloud.publish("ota/dev-v/job", b"still here")
        assert victim.wait_for(lambda got: ("ota/dev-v/job", b"still here") in got, timeout=10)
    finally:
        for c in (victim, intruder):
            c.client.disconnect()
            c.client.loop_stop()


def test_broker_stops_and_leaves_no_process(broker: Broker) -> None:
    assert procs.is_alive(broker.process.pid)
    assert procs.stop(broker.process)
    assert not procs.is_alive(broker.process.pid)


def test_the_pid_file_names_the_running_broker_also_after_a_restart(broker: Broker, tmp_path: Path) -> None:
    directory = tmp_path / "mosquitto"
    assert mosquitto.current_pid(directory) == broker.process.pid
    old = broker.process.pid
    broker.restart(directory)
    assert broker.process.pid != old and not procs.is_alive(old)
    assert mosquitto.current_pid(directory) == broker.process.pid


@pytest.mark.parametrize("stale", ["dead", "not-mosquitto", "garbage"])
def test_a_stale_pid_file_is_never_signalled(broker: Broker, tmp_path: Path, stale: str) -> None:
    directory = tmp_path / "mosquitto"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        if stale == "dead":
            other.kill()
            other.wait()
        (directory / mosquitto.PID_FILE).write_text({"garbage": "12ab\n"}.get(stale, f"{other.pid}\n"))
        assert mosquitto.current_pid(directory) is None
        assert mosquitto.reload(directory) is None
        if stale == "not-mosquitto":
            assert other.poll() is None  # not signalled (SIGHUP would have ended it)
    finally:
        other.kill()
        other.wait()


def test_the_crl_watcher_makes_a_restarted_broker_refuse_a_revoked_certificate(broker: Broker,
                                                                             tmp_path: Path) -> None:
    directory = tmp_path / "mosquitto"
    watcher = CrlWatcher(broker.ca.crl_path, directory)  # made before the restart, as the bridge's is
    issued = broker.ca.issue(broker.certs, "revoked-later", "dev-late")
    broker.restart(directory)
    first = connect(broker.port, broker.ca.cert_path, issued)
    assert isinstance(first, Client), first
    first.client.disconnect()
    first.client.loop_stop()
    assert watcher.check() is None  # the CRL did not change: nothing to reload
    broker.ca.revoke(issued.cert.read_bytes())
    assert watcher.check() == broker.process.pid  # the broker running now, not the one before the restart
    deadline = time.monotonic() + WAIT
    outcome = connect(broker.port, broker.ca.cert_path, issued)
    while isinstance(outcome, Client) and time.monotonic() < deadline:  # SIGHUP is handled asynchronously
        outcome.client.disconnect()
        outcome.client.loop_stop()
        time.sleep(0.1)
        outcome = connect(broker.port, broker.ca.cert_path, issued)
    assert isinstance(outcome, str), "the restarted broker still accepts a revoked certificate"
    assert procs.is_alive(broker.process.pid)
