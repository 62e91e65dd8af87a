"""`ota-pack build --firmware IMAGE --mcuboot`: MCUboot image checks and the aligned, unchanged payload."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from otaformat.container import verify_package
from otaformat.verdict import trusted_keys
from packager import mcuboot
from packager.cli import main as ota_pack

from .mcudevice import Firmware


def _build(fw: Firmware, image: bytes, *extra: str, version: str = "3.1.4") -> tuple[int, str, Path]:
    src, out = fw.work / "cli.img", fw.work / "cli.otapkg"
    src.write_bytes(image)
    err = io.StringIO()
    code = ota_pack(["build", "--firmware", str(src), "--mcuboot", "--app", "mcu-fw", "--version", version,
                     "--model", "m", "--key", str(fw.keys / "publisher.key"), "--out", str(out), *extra],
                    stdout=io.StringIO(), stderr=err)
    return code, err.getvalue(), out


def test_payload_is_the_image_unchanged_at_an_aligned_offset(firmware: Firmware) -> None:
    image = firmware.image("3.1.4", size=5000, seed=9)
    code, err, out = _build(firmware, image, "--mcuboot-key", str(firmware.keys / "image.pem"))
    assert code == 0, err
    data = out.read_bytes()
    (n,) = struct.unpack(">I", data[8:12])
    assert (12 + n) % mcuboot.PAYLOAD_ALIGN == 0
    assert data[12 + n :] == image
    verified = verify_package(data, trusted_keys([(firmware.keys / "publisher.pub").read_bytes()]))
    m = verified.manifest
    assert (m.kind, m.payload.compression, [f.path for f in m.files]) == ("firmware", "none", ["image.bin"])
    assert dict(m.extra)["image-format"] == "mcuboot"


@pytest.mark.parametrize(("mutate", "args", "message"), [
    (lambda img: img[:-1], (), "TLV"),
    (lambda img: b"\0" * 4 + img[4:], (), "not an MCUboot image"),
    (lambda img: img + b"\xff" * 64, (), "unpadded image"),
    (lambda img: img[:600] + bytes([img[600] ^ 1]) + img[601:], ("--mcuboot-key", "KEY"), "SHA256 TLV"),
    (lambda img: img, ("--compression", "zstd"), "not compressed"),
])
def test_bad_images_and_options_are_refused(firmware: Firmware, mutate, args, message: str) -> None:  # type: ignore[no-untyped-def]
    image = mutate(firmware.image("3.1.4", size=5000, seed=9))
    args = tuple(str(firmware.keys / "image.pem") if a == "KEY" else a for a in args)
    code, err, _ = _build(firmware, image, *args)
    assert code == 2 and message in err, err


def test_version_must_match_the_image(firmware: Firmware) -> None:
    code, err, _ = _build(firmware, firmware.image("3.1.4", size=5000, seed=9), version="3.1.5")
    assert code == 2 and "differs from the image's version 3.1.4" in err


def test_image_signed_by_another_key_is_refused_with_mcuboot_key(firmware: Firmware) -> None:
    image = firmware.image("3.1.4", size=5000, seed=9, key="other-image.pem")
    code, err, _ = _build(firmware, image, "--mcuboot-key", str(firmware.keys / "image.pem"))
    assert code == 2 and "does not verify" in err
