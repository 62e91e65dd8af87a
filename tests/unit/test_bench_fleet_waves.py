"""bench.fleet's --wave-* flags: the POST /jobs body carries exactly the staged-waves spec asked for."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench import fleet


def _args(**waves: Any) -> argparse.Namespace:
    flags = {"wave_size": None, "wave_percent": None, "wave_pause": None, "wave_interval": None, **waves}
    return argparse.Namespace(block_size=4096, window=32, **flags)


@pytest.mark.parametrize("flags, expected", [
    ({}, None),
    ({"wave_size": 500}, {"size": 500}),
    ({"wave_percent": 10.0}, {"percent": 10.0}),
    ({"wave_size": 1000, "wave_pause": 30.0}, {"size": 1000, "pause_seconds": 30.0}),
    ({"wave_percent": 25.0, "wave_interval": 60.0}, {"percent": 25.0, "interval_seconds": 60.0}),
])
def test_job_body_carries_the_waves_asked_for(flags: dict[str, Any], expected: dict[str, Any] | None) -> None:
    body = fleet.job_body("up-1", _args(**flags))
    assert body.get("waves") == expected
    assert ("waves" in body) is (expected is not None)
    assert {k: body[k] for k in ("package_id", "mode", "block_size", "window")} == {
        "package_id": "up-1", "mode": "block", "block_size": 4096, "window": 32}


@pytest.mark.parametrize("flags", [
    {"wave_size": 10, "wave_percent": 5.0},
    {"wave_size": 10, "wave_pause": 1.0, "wave_interval": 2.0},
    {"wave_pause": 1.0},
    {"wave_interval": 2.0},
])
def test_contradictory_wave_flags_are_refused(flags: dict[str, Any]) -> None:
    with pytest.raises(SystemExit):
        fleet.waves(_args(**flags))
