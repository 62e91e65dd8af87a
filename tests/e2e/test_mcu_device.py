"""The C MCU library as a device of the real local stack (moto, mosquitto with mTLS, API, bridge).

The host build mcu/build/host/ota_device links the same library as the Cortex-M build with a
libmosquitto transport and files as flash. The test plays the factory (pre-authorises the device,
makes its key and CSR, registers it, stores certificate and CA, flashes version 1.0.0 into the
primary slot) and the operator (uploads an MCUboot package built by `ota-pack build --firmware
--mcuboot`, creates a block-mode job). The device is SIGKILLed mid-transfer (a power cut), resumes
from its persisted bitmap, verifies, "swaps" its slot files, reboots (exec), confirms the trial
image and reports SUCCEEDED. A tampered image is REJECTED with the reason.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from local import mcudevice, procs
from local.mcudevice import SLOT
from local.scenario import Session
from otaformat import wire
from tests.mcu.mcudevice import APP, Firmware, build

from .conftest import WAIT, create_job, terminal, unique_epn, wait_execution

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "mcu-e2e"
BLOCK = 1024
WINDOW = 4


def _upload(s: Session, fw: Firmware, package: bytes, name: str) -> str:
    path = fw.work / f"{name}.otapkg"
    path.write_bytes(package)
    done = s.ota("--json", "packages", "upload", str(path), "--timeout", str(WAIT), show=False)
    assert done.code == 0, done.out + done.err
    return str(done.json()["upload_id"])


def _factory(s: Session, epn: str, home: Path, running: bytes) -> dict[str, Any]:
    return mcudevice.factory(s, epn, MODEL, APP, "1.0.0", home, running)


def _start(s: Session, fw: Firmware, epn: str, home: Path, mqtt: dict[str, Any]) -> procs.Started:
    return mcudevice.start(s, epn, MODEL, APP, home, mqtt, fw.keys / "publisher.pub",
                           fw.keys / "image.pem")


def _online(s: Session, epn: str, version: str) -> bool:
    return mcudevice.online(s, epn, APP, version)


@pytest.fixture
def device_env(on_stack: Session, tmp_path: Path) -> Any:
    build("host")
    fw = Firmware(tmp_path / "fw")
    assert on_stack.ota("keys", "add", str(fw.keys / "publisher.pub"), "--name", f"mcu-{os.getpid()}-{id(fw)}",
                        show=False).code == 0
    started: list[procs.Started] = []
    yield on_stack, fw, started
    for p in started:
        procs.stop(p)


def test_mcu_device_takes_a_job_survives_a_power_cut_swaps_and_confirms(device_env: Any, tmp_path: Path) -> None:
    s, fw, started = device_env
    old, new = fw.image("1.0.0", seed=11, slot_size=SLOT), fw.image("1.1.0", size=180_000, seed=12, slot_size=SLOT)
    upload_id = _upload(s, fw, fw.package(new, "1.1.0", model=MODEL, name="mcu-good", check_key=True), "good")
    epn, home = unique_epn("mcu"), tmp_path / "device"
    mqtt = _factory(s, epn, home, old)
    started.append(_start(s, fw, epn, home, mqtt))
    assert s.wait_for("inventory", lambda: _online(s, epn, "1.0.0"), WAIT), procs.log_tail(started[-1])

    package_size = len((fw.work / "mcu-good.otapkg").read_bytes())
    total = wire.block_count(package_size, BLOCK)
    job_id = create_job(s, upload_id, [epn], BLOCK, WINDOW)
    view = wait_execution(s, job_id, epn, lambda v: terminal(v) or v["blocks_acked"] >= total // 4)
    assert view["state"] == "IN_PROGRESS", (view, procs.log_tail(started[-1]))
    os.killpg(started[-1].pid, signal.SIGKILL)  # power cut mid-transfer
    time.sleep(0.5)
    held = (home / "kv1.bin").read_bytes()
    assert 0 < sum(bin(b).count("1") for b in held) < total, "the bitmap was persisted part-way"
    started.append(_start(s, fw, epn, home, mqtt))

    view = wait_execution(s, job_id, epn, terminal)
    assert view["state"] == "SUCCEEDED", (view, procs.log_tail(started[-1], 40))
    assert view["blocks_sent"] < 1.5 * total, "it resumed instead of starting over"
    assert mcudevice.confirmed(home, new), "the primary slot runs the new image, confirmed after the trial boot"
    assert s.wait_for("new inventory", lambda: _online(s, epn, "1.1.0"), WAIT)
    log = Path(started[-1].log).read_text()
    assert "swapped in the new image (trial)" in log and "reboot" in log


def test_mcu_device_rejects_a_tampered_image(device_env: Any, tmp_path: Path) -> None:
    s, fw, started = device_env
    old = fw.image("1.0.0", seed=21, slot_size=SLOT)
    bad = bytearray(fw.image("1.2.0", size=30_000, seed=22, slot_size=SLOT))
    bad[0x200 + 5000] ^= 0x40  # flipped after imgtool signed it; the package around it is validly signed
    upload_id = _upload(s, fw, fw.package(bytes(bad), "1.2.0", model=MODEL, name="mcu-bad"), "bad")
    epn, home = unique_epn("mcu-bad"), tmp_path / "device"
    started.append(_start(s, fw, epn, home, _factory(s, epn, home, old)))
    assert s.wait_for("inventory", lambda: _online(s, epn, "1.0.0"), WAIT), procs.log_tail(started[-1])
    job_id = create_job(s, upload_id, [epn], 4096, 8)
    view = wait_execution(s, job_id, epn, terminal)
    assert view["state"] == "REJECTED", (view, procs.log_tail(started[-1], 40))
    reason = str(view.get("reason") or view.get("status_reason") or view)
    assert "hash: the MCUboot image does not match its SHA-256 TLV" in reason, view
    assert (home / "slot0.bin").read_bytes()[: len(old)] == old, "the running image is untouched"
