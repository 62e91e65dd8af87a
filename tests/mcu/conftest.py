"""Fixtures for the MCU library tests: one key set and a few firmware images per session."""

from __future__ import annotations

import pytest

from .mcudevice import Firmware


@pytest.fixture(scope="session")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Firmware:
    return Firmware(tmp_path_factory.mktemp("mcu-firmware"))
