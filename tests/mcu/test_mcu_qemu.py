"""The update logic of the C library on an emulated Cortex-M (qemu-system-arm -M mps2-an385).

Each test builds real artefacts (an MCUboot image signed by imgtool, packaged by `ota-pack build
--firmware --mcuboot`, a job document and block frames from otaformat), feeds them to the firmware
through semihosting and reads what the device published. The same scripts run on the host build in
test_mcu_replay.py; here they prove the code runs on the target architecture.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from .mcudevice import MODEL, Firmware, Output, Script, frames, job_document, pack, run_qemu

pytestmark = pytest.mark.slow
EPN = "qemu-dev-1"


def update(fw: Firmware, package: bytes, running: bytes, workdir: Path, *, epn: str = EPN, seed: int = 7,
           image_len: int = 0) -> Output:
    """Boot on `running`, take a job for `package` with frames shuffled, duplicated and corrupted."""
    s = Script().provision(fw, epn).preload(0, running).boot().connect().job(job_document(package, epn))
    fr = frames(package)
    order = [*range(len(fr)), 0, len(fr) // 2]  # duplicates change nothing
    random.Random(seed).shuffle(order)
    bad = bytearray(fr[1])
    bad[-1] ^= 0xFF  # CRC mismatch: dropped silently
    s.block(bytes(bad)).block(frames(package, stream=43)[2])  # wrong stream: dropped
    for i in order:
        s.block(fr[i])
    s.wait(300)
    if image_len:
        s.hash_slot(0, image_len)
    return run_qemu(s.quit(), workdir)


def test_good_image_is_verified_swapped_and_confirmed(firmware: Firmware, tmp_path: Path) -> None:
    old, new = firmware.image("1.0.0", seed=1), firmware.image("1.1.0", seed=2)
    package = firmware.package(new, "1.1.0", name="good", check_key=True)
    out = update(firmware, package, old, tmp_path, image_len=len(new))
    assert out.code == 0, out.lines
    steps = [(s["state"], s.get("step")) for s in out.statuses()]
    assert steps == [("IN_PROGRESS", "DOWNLOADING"), ("IN_PROGRESS", "VERIFYING"), ("IN_PROGRESS", "INSTALLING"),
                     ("SUCCEEDED", None)], out.lines
    assert "BOOT swapped" in out.lines
    assert out.value("HASH 0") == hashlib.sha256(new).hexdigest()  # the primary slot holds the image as signed
    assert out.inventories()[-1]["apps"] == {"mcu-fw": "1.1.0"}
    assert out.published("ack")[-1] == {"n": len(frames(package)), "s": 42, "x": "exec-1"}
    assert [s["seq"] for s in out.statuses()] == sorted({s["seq"] for s in out.statuses()})
    assert 0 < int(out.value("STACK")) < 8192


def test_tampered_image_is_rejected(firmware: Firmware, tmp_path: Path) -> None:
    old, new = firmware.image("1.0.0", seed=1), bytearray(firmware.image("1.1.0", seed=3))
    new[0x200 + 100] ^= 0x01  # one bit of the body after imgtool signed it
    package = firmware.package(bytes(new), "1.1.0", name="tampered")  # the package itself is validly signed
    out = update(firmware, package, old, tmp_path, image_len=len(old))
    assert out.final()["state"] == "REJECTED", out.lines
    assert out.final()["reason"].startswith("hash: the MCUboot image does not match its SHA-256 TLV")
    assert "REBOOT" not in out.lines
    assert out.value("HASH 0") == hashlib.sha256(old).hexdigest()  # the running image is untouched


def test_image_signed_by_another_key_is_rejected(firmware: Firmware, tmp_path: Path) -> None:
    old, new = firmware.image("1.0.0", seed=1), firmware.image("1.1.0", seed=4, key="other-image.pem")
    out = update(firmware, firmware.package(new, "1.1.0", name="otherkey"), old, tmp_path)
    assert out.final()["state"] == "REJECTED", out.lines
    assert out.final()["reason"].startswith("untrusted-key: the MCUboot image")


def test_downgrade_is_rejected_before_download(firmware: Firmware, tmp_path: Path) -> None:
    running, older = firmware.image("1.1.0", seed=2), firmware.image("1.0.0", seed=1)
    out = update(firmware, firmware.package(older, "1.0.0", name="older"), running, tmp_path)
    assert out.final()["state"] == "REJECTED", out.lines
    assert out.final()["reason"].startswith("downgrade: ")
    assert out.published("get") == [] and out.published("ack") == []  # not a byte downloaded


def test_wrong_model_is_rejected_before_download(firmware: Firmware, tmp_path: Path) -> None:
    old, new = firmware.image("1.0.0", seed=1), firmware.image("1.1.0", seed=2)
    out = update(firmware, firmware.package(new, "1.1.0", model=MODEL + "-other", name="othermodel"), old, tmp_path)
    assert out.final()["state"] == "REJECTED", out.lines
    assert out.final()["reason"].startswith("wrong-model: ")
    assert out.published("get") == []


def test_untrusted_publisher_is_rejected(firmware: Firmware, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue"
    pack("keygen", "--out", str(rogue))
    old, new = firmware.image("1.0.0", seed=1), firmware.image("1.1.0", seed=2)
    package = firmware.package(new, "1.1.0", name="rogue", signer=rogue / "publisher.key")
    out = update(firmware, package, old, tmp_path / "run")
    assert out.final()["state"] == "REJECTED", out.lines
    assert out.final()["reason"].startswith("untrusted-key: ")
