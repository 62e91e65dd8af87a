"""The MQTT transport says when it cannot reach its broker instead of retrying silently."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from agent.mqtt_transport import MqttTransport


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_broker_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    port = _closed_port()
    transport = MqttTransport("dev-1", "127.0.0.1", port)
    with caplog.at_level(logging.WARNING, logger="ota-agent"):
        transport.start(lambda event: None)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "cannot reach the broker" not in caplog.text:
                time.sleep(0.05)
        finally:
            transport.stop()
    assert f"cannot reach the broker at 127.0.0.1:{port}" in caplog.text
    assert not transport.connected
