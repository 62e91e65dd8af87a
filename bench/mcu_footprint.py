"""Footprint of the OTA MCU library (mcu/) next to the published figures of two anchors.

Run: python -m bench.mcu_footprint   (builds with `make -C mcu`, which fetches Mbed TLS once)

Ours is measured in this run: the linked Cortex-M4 image (arm-none-eabi-gcc -Os, --gc-sections),
per component, including its crypto (Mbed TLS SHA-256 + ECDSA P-256 verify) and libc helpers; RAM is
data + bss + the worst-case stack from the call graph (-fcallgraph-info=su). The anchors' figures
are what their projects publish, quoted with their sources; what each figure covers differs, and
the notes say how. Nothing here is a timed assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MCU = ROOT / "mcu"


@dataclass(frozen=True)
class Anchor:
    name: str
    flash: str
    ram: str
    covers: str
    source: str


ANCHORS = (
    Anchor(
        "AWS IoT OTA library (FreeRTOS OTA agent) v3",
        "11.6 KiB (-Os), 12.8 KiB (-O1)",
        "not in the table (its own task stack + buffers, configured)",
        "ota.c, ota_interface.c, ota_base64.c, ota_mqtt.c, ota_cbor.c, ota_http.c only: GCC for Cortex-M; "
        "without coreJSON, tinyCBOR, the MQTT client, the PAL and the signature crypto",
        "https://github.com/aws/ota-for-aws-iot-embedded-sdk/blob/main/docs/doxygen/include/size_table.md "
        "('Code Size of AWS IoT OTA (example generated with GCC for ARM Cortex-M)')",
    ),
    Anchor(
        "mender-mcu (preview, Zephyr v4.0.0)",
        "33 KiB ROM",
        "15 KiB (8 KiB own heap + 6 KiB work-queue stack by default)",
        "the Mender MCU Zephyr module on ESP32-S3-DevKitC (Xtensa, not Cortex-M), log level warning; "
        "without cJSON, Mbed TLS, the network stack and NVS",
        "https://github.com/mendersoftware/mender-mcu/blob/main/docs/footprint.md",
    ),
)


def measure() -> dict[str, object]:
    subprocess.run(["make", "-s", "-C", str(MCU), "footprint"], check=True, stdout=subprocess.DEVNULL)
    done = subprocess.run([sys.executable, str(MCU / "tools" / "footprint.py"), "--json", str(MCU / "build" / "cm4")],
                          check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout))


def main() -> int:
    figures = measure()
    rows = figures["rows"]
    assert isinstance(rows, list)
    print("OTA MCU library, measured now (Cortex-M4, arm-none-eabi-gcc -Os, linked with --gc-sections):")
    print(f"  {'component':46} {'flash B':>8} {'RAM B':>7} {'stack B':>8}")
    for row in rows:
        print(f"  {row['component']:46} {row['flash']:8} {row['ram']:7} {row.get('stack', 0):8}")
    flash, static_ram, stack = (int(str(figures[k])) for k in ("flash", "static_ram", "stack"))
    print(f"  {'total':46} {flash:8} {static_ram:7}  + worst-case stack {stack} B = {static_ram + stack} B RAM")
    print()
    print(f"{'agent':44} | {'flash':31} | RAM")
    print(f"{'this library (incl. SHA-256 + ECDSA P-256)':44} | {f'{flash / 1024:.1f} KiB':31} | "
          f"{(static_ram + stack) / 1024:.1f} KiB")
    for anchor in ANCHORS:
        print(f"{anchor.name:44} | {anchor.flash:31} | {anchor.ram}")
    print()
    for anchor in ANCHORS:
        print(f"- {anchor.name}: covers {anchor.covers}.\n  source: {anchor.source}")
    print("- this library: covers protocol, job/manifest checks, verification, MCUboot handoff, its crypto and "
          "libc helpers; not the MQTT client, TLS or the port (flash driver, KV). RAM excludes the MQTT client's "
          "receive buffer (one block frame, 13 + block_size bytes).")
    aws = 11.6 * 1024
    print(f"\nratio: this library without its crypto / AWS OTA library code = "
          f"{_without_crypto(rows) / aws:.2f}; with crypto / mender-mcu ROM = {flash / (33 * 1024):.2f}")
    return 0


def _without_crypto(rows: list[dict[str, object]]) -> int:
    return sum(int(str(r["flash"])) for r in rows if not str(r["component"]).startswith("mbedtls"))


if __name__ == "__main__":
    sys.exit(main())
