"""The C MCU library's host build (mcu/build/host/ota_device, a libmosquitto device) on the local stack.

Shared by the demo (local/demo.py) and tests/e2e/test_mcu_device.py: build it (`make -C mcu host`),
play the factory for it (pre-authorise the EPN with `ota devices add`, make its key and CSR, register
it with the one-time token, store certificate and CA, flash the running image into the primary slot
file), start it against the stack's broker and tell when it is online with a given version.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.register import make_csr
from local import procs, stack
from local.scenario import ScenarioError, Session
from otaformat.signing import key_id, load_public_key

MCU = stack.PROJECT_DIR / "mcu"
HOST_DEVICE = MCU / "build" / "host" / "ota_device"
SLOT = 256 * 1024  # FILE_SLOT_SIZE of mcu/port/host/file_port.h
MAX_BLOCK = 4096  # OTA_MAX_BLOCK_SIZE of mcu/include/ota_config.h


def point(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed P-256 point the device is provisioned with."""
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def image_point(image_key: Path) -> bytes:
    """The public point of an imgtool (PEM) image signing key."""
    key = serialization.load_pem_private_key(image_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ScenarioError(f"{image_key} is not an ECDSA P-256 key")
    return point(key.public_key())


def run(s: Session, argv: list[str], what: str, timeout: float = 900) -> None:
    """Run a command (printed first, as the scenario does for `ota`); a failure stops the scenario."""
    s.say("$ " + " ".join(shlex.quote(a) for a in argv))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=stack.PROJECT_DIR)
    if done.returncode != 0:
        raise ScenarioError(f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def factory(s: Session, epn: str, model: str, app: str, version: str, home: Path, running: bytes,
            show: bool = False) -> dict[str, Any]:
    """Pre-authorise `epn`, register it with a fresh key (as a factory station would), store its certificate,
    key and CA under `home` and flash `running` (an MCUboot image of `app` `version`) into its primary slot.
    Returns the MQTT endpoint the API answered with."""
    made = s.ota("devices", "add", epn, "--model", model, show=show)
    token = re.search(r"registration token \(shown once\): (\S+)", made.out)
    if made.code != 0 or token is None:
        raise ScenarioError(f"cannot add device {epn}: {made.err.strip()}")
    key_pem, csr = make_csr(epn)
    url = f"{s.state['api_url']}/devices/{epn}/register"
    if show:
        s.say(f"(factory station: key and CSR for {epn}, POST {url} with the token, CSR and apps {{{app}: {version}}})")
    answer = requests.post(url, timeout=30, json={"token": token.group(1), "csr": csr.decode(),
                                                  "agent_version": "1.0.0", "apps": {app: version}})
    if answer.status_code != 200:
        raise ScenarioError(f"registration of {epn} refused: HTTP {answer.status_code} {answer.text}")
    body = answer.json()
    home.mkdir(parents=True, exist_ok=True)
    (home / "device.key").write_bytes(key_pem)
    os.chmod(home / "device.key", 0o600)
    (home / "device.crt").write_text(body["certificate"])
    (home / "ca.pem").write_text(body["ca"])
    (home / "slot0.bin").write_bytes(running + b"\xff" * (SLOT - len(running)))
    return dict(body["mqtt"])


def start(s: Session, epn: str, model: str, app: str, home: Path, mqtt: dict[str, Any], publisher_pub: Path,
          image_key: Path, show: bool = False) -> procs.Started:
    """Start ota_device for `epn` (files as flash under `home`), trusting the publisher key and the image key."""
    pub = load_public_key(publisher_pub.read_bytes())
    argv = [str(HOST_DEVICE), "--dir", str(home), "--epn", epn, "--model", model, "--app", app,
            "--host", str(mqtt["host"]), "--port", str(mqtt["port"]), "--ca", str(home / "ca.pem"),
            "--cert", str(home / "device.crt"), "--key", str(home / "device.key"),
            "--publisher", f"{point(pub).hex()}:{key_id(pub)}", "--image-key", image_point(image_key).hex()]
    if show:
        s.say("$ " + " ".join(shlex.quote(a) for a in argv) + f" >{home / 'device.log'} &")
    started = procs.start(f"ota_device {epn}", argv, home / "device.log")
    if show:
        s.say(f"started ota_device for {epn} ({model}): pid {started.pid}, flash files in {home}")
    return started


def online(s: Session, epn: str, app: str, version: str) -> bool:
    """The device reported its inventory over MQTT since it registered, with `app` at `version`."""
    device = s.device(epn)
    seen, registered = device.get("last_seen"), device.get("registered_at")
    return bool(seen and registered and seen > registered) and (device.get("apps") or {}).get(app) == version


def confirmed(home: Path, image: bytes) -> bool:
    """The primary slot holds `image` byte for byte with image_ok set in its trailer (confirmed after the
    trial boot)."""
    slot0 = (home / "slot0.bin").read_bytes()
    return slot0[: len(image)] == image and slot0[SLOT - 24] == 0x01
