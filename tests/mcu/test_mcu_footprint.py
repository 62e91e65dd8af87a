"""The footprint goals of issue 10, measured on the linked Cortex-M4 image (`make -C mcu`).

Sizes are a property of the build, not a timing: the test fails when a change makes the library
outgrow flash <= 32 KiB including crypto, or RAM (data + bss + worst-case stack) <= 8 KiB.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .mcudevice import MCU, build

pytestmark = pytest.mark.slow


def test_footprint_fits_the_goals() -> None:
    build("footprint")
    done = subprocess.run([sys.executable, str(MCU / "tools" / "footprint.py"), "--json", str(MCU / "build" / "cm4")],
                          capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout)
    assert figures["flash"] <= 32 * 1024, figures
    assert figures["static_ram"] + figures["stack"] <= 8 * 1024, figures
    names = {row["component"] for row in figures["rows"]}
    assert {"mbedtls SHA-256", "mbedtls ECDSA P-256 (bignum, ecp, asn1)", "agent state machine"} <= names
    assert 1000 < figures["stack"] < 4096, "the ECDSA verification dominates the stack"
