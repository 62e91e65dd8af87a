"""Per-device pacing for IoT Core limits: token buckets per device, both messages/s and bytes/s, wired
only when configured (the AWS stage config sets it; the local default is unlimited)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from chalicelib import bootstrap
from chalicelib.adapters.pacing import PacedPublisher
from chalicelib.settings import Settings

from .fakes import RecordingPublisher

ROOT = Path(__file__).resolve().parents[2]


class SimClock:
    """Simulated time: sleeping advances it; nothing real waits."""

    def __init__(self):
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept += seconds
        self.now += seconds


@pytest.mark.parametrize(("rate", "byte_rate", "sends", "size", "minimum_seconds"), [
    (100, 0, 250, 10, (250 - 50) / 100),           # 50 burst (half a second), then 100/s
    (10, 0, 5, 10, 0.0),                             # within the burst: no wait
    (0, 512 * 1024, 64, 32 * 1024, (64 * 32 - 256) / 512),  # 2 MiB at 512 KiB/s after a 256 KiB burst
    (100, 512 * 1024, 64, 32 * 1024, (64 * 32 - 256) / 512),  # the tighter of the two wins
])
def test_one_device_never_exceeds_its_rates(rate, byte_rate, sends, size, minimum_seconds):
    clock = SimClock()
    inner = RecordingPublisher()
    paced = PacedPublisher(inner, rate, byte_rate, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(sends):
        paced.publish("ota/dev-1/blk", bytes(size))
    assert len(inner.sent) == sends
    assert clock.now - start == pytest.approx(minimum_seconds, abs=1e-6)


def test_devices_are_paced_independently():
    clock = SimClock()
    paced = PacedPublisher(RecordingPublisher(), 10, 0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        paced.publish("ota/dev-1/blk", b"x")
    assert paced.delay("ota/dev-1/blk", 1) > 0
    assert paced.delay("ota/dev-2/blk", 1) == 0.0
    assert paced.delay("ota/dev-2/job", 1) == 0.0  # job documents count too, per device
    for _ in range(5):
        paced.publish("ota/g/m1/job-1/blk", b"x")
    assert paced.delay("ota/g/m1/job-1/blk", 1) > 0  # a group's broadcast is paced as one receiver's
    assert paced.delay("ota/g/m1/job-2/blk", 1) == 0.0  # another group is another bucket


def test_unlimited_never_sleeps():
    clock = SimClock()
    paced = PacedPublisher(RecordingPublisher(), 0, 0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        paced.publish("ota/dev-1/blk", bytes(100_000))
    assert clock.slept == 0.0


@pytest.mark.parametrize(("extra", "paced"), [
    ({}, False),
    ({"OTA_DEVICE_PUBLISH_RATE": "85"}, True),
    ({"OTA_DEVICE_BYTE_RATE": "491520"}, True),
    ({"OTA_DEVICE_PUBLISH_RATE": "0", "OTA_DEVICE_BYTE_RATE": "0"}, False),
])
def test_composition_root_paces_only_when_configured(env, extra, paced):
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        container = bootstrap.build(Settings.from_env({**env, **extra}), session)
        assert isinstance(container.publisher, PacedPublisher) is paced


@pytest.mark.parametrize("value", ["-1", "fast", "1e3"])
def test_bad_rates_are_named(env, value):
    with pytest.raises(ValueError, match="OTA_DEVICE_PUBLISH_RATE"):
        Settings.from_env({**env, "OTA_DEVICE_PUBLISH_RATE": value})


def test_aws_stage_respects_iot_core_limits():
    variables = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]["environment_variables"]
    settings = Settings.from_env(variables)
    assert 0 < settings.device_publish_rate < 100  # the device's acks share the 100/s
    assert 0 < settings.device_byte_rate <= 512 * 1024
