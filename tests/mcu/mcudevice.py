"""Test helpers for the C MCU library (mcu/): build it, make real signed firmware, drive devices.

* `build(target)` runs `make -C mcu <target>` once per process; a missing tool fails with the line
  that says what to install (local/osdeps.py installs them in `make setup`).
* `Firmware` makes a publisher key (ota-pack keygen), an MCUboot image key (imgtool keygen) and real
  packages: an image signed by `imgtool sign`, packaged by `ota-pack build --firmware --mcuboot`.
* `Script` writes the replay records of mcu/port/common/replay.h; `run_host` and `run_qemu` run it on
  the host build or on the Cortex-M firmware under qemu-system-arm (mps2-an385, semihosting).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otaformat import messages, wire
from otaformat.signing import key_id, load_public_key
from packager.cli import main as ota_pack

ROOT = Path(__file__).resolve().parents[2]
MCU = ROOT / "mcu"
QEMU_ELF = MCU / "build" / "qemu" / "ota_qemu.elf"
HOST_REPLAY = MCU / "build" / "host" / "ota_replay"
HOST_DEVICE = MCU / "build" / "host" / "ota_device"
HOST_ASAN_REPLAY = MCU / "build" / "host-asan" / "ota_replay"
SLOT_SIZE = 128 * 1024  # RAM_SLOT_SIZE of mcu/port/common/ram_port.c
APP = "mcu-fw"
MODEL = "mcu-m4"
_built: set[str] = set()
_lock = threading.Lock()


class ToolMissing(RuntimeError):
    """A tool the MCU tests need is not installed."""


def imgtool() -> str:
    found = shutil.which("imgtool") or str(Path(sys.executable).parent / "imgtool")
    if not os.access(found, os.X_OK):
        raise ToolMissing("imgtool not found: pip install -r requirements-dev.txt (it lists imgtool)")
    return found


def build(*targets: str) -> None:
    """make -C mcu TARGETS (fetches Mbed TLS on first use); raises with make's output on failure.

    Targets: "host" and "host-asan" (cc, libmosquitto-dev), "qemu" (arm-none-eabi-gcc, qemu-system-arm to run it),
    "footprint" (arm-none-eabi-gcc)."""
    with _lock:
        todo = [t for t in targets if t not in _built]
        if not todo:
            return
        for tool, package, needed_by in (("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi",
                                          {"qemu", "footprint"}),
                                         ("qemu-system-arm", "qemu-system-arm", {"qemu"}),
                                         ("cc", "gcc libmosquitto-dev", {"host", "host-asan"})):
            if needed_by & set(todo) and not shutil.which(tool):
                raise ToolMissing(f"{tool} not found: run 'make setup' as root, or apt-get install {package}")
        (MCU / "build").mkdir(exist_ok=True)
        with open(MCU / "build" / ".lock", "w") as lock:  # pytest-xdist workers build one at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = subprocess.run(["make", "-s", "-C", str(MCU), *todo], capture_output=True, text=True,
                                  timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"make -C mcu {' '.join(todo)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        _built.update(todo)


def pack(*argv: str) -> None:
    """Run `ota-pack ARGV` in-process; fail with its error line."""
    out, err = io.StringIO(), io.StringIO()
    assert ota_pack(list(argv), stdout=out, stderr=err) == 0, err.getvalue()


def point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


@dataclass
class Firmware:
    """Keys and packages under `work`."""

    work: Path
    created: str = "1767225600"  # 2026-01-01
    keys: Path = field(init=False)

    def __post_init__(self) -> None:
        self.keys = self.work / "keys"
        self.keys.mkdir(parents=True, exist_ok=True)
        if not (self.keys / "publisher.key").exists():
            pack("keygen", "--out", str(self.keys))
            subprocess.run([imgtool(), "keygen", "-k", str(self.keys / "image.pem"), "-t", "ecdsa-p256"], check=True,
                           capture_output=True)
            subprocess.run([imgtool(), "keygen", "-k", str(self.keys / "other-image.pem"), "-t", "ecdsa-p256"],
                           check=True, capture_output=True)

    @property
    def publisher(self) -> ec.EllipticCurvePublicKey:
        return load_public_key((self.keys / "publisher.pub").read_bytes())

    def image_point(self, name: str = "image.pem") -> bytes:
        key = serialization.load_pem_private_key((self.keys / name).read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return point(key.public_key())

    def image(self, version: str, size: int = 20000, key: str = "image.pem", seed: int = 1,
              slot_size: int = SLOT_SIZE) -> bytes:
        """A firmware body of `size` pseudo-random bytes, signed by imgtool as an MCUboot image."""
        body = self.work / f"body-{version}-{seed}.bin"
        out = self.work / f"image-{version}-{seed}-{key}-{slot_size}.bin"
        body.write_bytes(random.Random(f"{version}/{seed}").randbytes(size))
        subprocess.run([imgtool(), "sign", "--key", str(self.keys / key), "--header-size", "0x200", "--pad-header",
                        "--align", "8", "--version", version, "--slot-size", hex(slot_size), str(body), str(out)],
                       check=True, capture_output=True)
        return out.read_bytes()

    def package(self, image: bytes, version: str, model: str = MODEL, name: str = "pkg", check_key: bool = False,
                signer: Path | None = None) -> bytes:
        """`ota-pack build --firmware IMAGE --mcuboot` (image signature checked only with check_key)."""
        src = self.work / f"{name}.img"
        src.write_bytes(image)
        out = self.work / f"{name}.otapkg"
        argv = ["build", "--firmware", str(src), "--mcuboot", "--app", APP, "--version", version, "--model", model,
                "--key", str(signer or self.keys / "publisher.key"), "--created", self.created, "--out", str(out)]
        if check_key:
            argv += ["--mcuboot-key", str(self.keys / "image.pem")]
        pack(*argv)
        return out.read_bytes()


def job_document(package: bytes, epn: str, execution_id: str = "exec-1", stream: int = 42, block_size: int = 1024,
                 window: int = 16) -> bytes:
    (n,) = struct.unpack(">I", package[8:12])
    envelope = json.loads(package[12 : 12 + n])
    doc = messages.JobDocument(
        job_id="job-1", execution_id=execution_id, epn=epn, stream=stream, mode="block", envelope=envelope,
        package_size=len(package), package_sha256=hashlib.sha256(package).hexdigest(), block_size=block_size,
        block_count=wire.block_count(len(package), block_size), window=window)
    return messages.encode(doc)


def frames(package: bytes, stream: int = 42, block_size: int = 1024) -> list[bytes]:
    total = wire.block_count(len(package), block_size)
    return [wire.encode_frame(stream, i, total, package[i * block_size : (i + 1) * block_size]) for i in range(total)]


class Script:
    """Replay records (mcu/port/common/replay.h)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def record(self, kind: str, body: bytes = b"") -> Script:
        self.data += kind.encode() + struct.pack(">I", len(body)) + body
        return self

    def provision(self, fw: Firmware, epn: str, model: str = MODEL, image_key: str = "image.pem",
                  wall_time: int = 1767225600 + 86400) -> Script:
        pub = fw.publisher
        body = b"\0".join(s.encode() for s in (epn, model, APP)) + b"\0"
        body += point(pub) + bytes.fromhex(key_id(pub)) + fw.image_point(image_key) + struct.pack(">I", wall_time)
        return self.record("P", body)

    def preload(self, slot: int, data: bytes, offset: int = 0) -> Script:
        """Write `data` into a slot's emulated flash, as a factory programmer would (8 KiB records)."""
        for at in range(0, len(data), 8192):
            self.record("W", bytes([slot]) + struct.pack(">I", offset + at) + data[at : at + 8192])
        return self

    def boot(self) -> Script:
        return self.record("I")

    def connect(self) -> Script:
        return self.record("C")

    def job(self, doc: bytes) -> Script:
        return self.record("J", doc)

    def block(self, frame: bytes) -> Script:
        return self.record("B", frame)

    def wait(self, ms: int) -> Script:
        return self.record("T", struct.pack(">I", ms))

    def self_test(self, passes: bool) -> Script:
        return self.record("S", bytes([0 if passes else 1]))

    def hash_slot(self, slot: int, length: int) -> Script:
        return self.record("H", bytes([slot]) + struct.pack(">I", length))

    def quit(self) -> bytes:
        self.record("Q")
        return bytes(self.data)


@dataclass
class Output:
    lines: list[str]
    code: int
    stderr: str = ""

    def published(self, leaf: str) -> list[dict]:
        """JSON payloads published on ota/{epn}/{leaf}, in order."""
        return [json.loads(line.split(" ", 2)[2]) for line in self.lines
                if line.startswith("PUB ") and line.split(" ", 2)[1].endswith("/" + leaf)]

    def statuses(self) -> list[dict]:
        return [m for m in self.published("status") if m.get("type") == "status"]

    def inventories(self) -> list[dict]:
        return [m for m in self.published("status") if m.get("type") == "inventory"]

    def final(self) -> dict:
        return [s for s in self.statuses() if s["state"] != "IN_PROGRESS"][-1]

    def value(self, prefix: str) -> str:
        return [line for line in self.lines if line.startswith(prefix + " ")][-1][len(prefix) + 1 :]


def run_host(script: bytes, timeout: float = 60, sanitized: bool = False) -> Output:
    """Run the replay device on the host (with ASan + UBSan when `sanitized`)."""
    build("host-asan" if sanitized else "host")
    done = subprocess.run([str(HOST_ASAN_REPLAY if sanitized else HOST_REPLAY)], input=script, capture_output=True,
                          timeout=timeout)
    return Output(done.stdout.decode(errors="replace").splitlines(), done.returncode,
                  done.stderr.decode(errors="replace"))


def run_qemu(script: bytes, workdir: Path, timeout: float = 120) -> Output:
    build("qemu")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "replay.bin").write_bytes(script)
    done = subprocess.run(
        ["qemu-system-arm", "-M", "mps2-an385", "-nodefaults", "-display", "none", "-monitor", "none", "-serial",
         "null", "-net", "none", "-semihosting-config", "enable=on,target=native", "-kernel", str(QEMU_ELF)],
        cwd=workdir, capture_output=True, timeout=timeout)
    return Output(done.stdout.decode(errors="replace").splitlines(), done.returncode)
