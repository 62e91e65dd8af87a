"""Hostile input against the C library built with AddressSanitizer and UndefinedBehaviorSanitizer.

Thousands of mutated job documents and block frames (seeded, so a failure replays) go through the
replay device; it must neither crash nor trip a sanitizer, and a clean update must still succeed in
the same build. Complements the exact refusal tests of test_mcu_replay.py and test_mcu_qemu.py.
"""

from __future__ import annotations

import random

import pytest

from otaformat import wire

from .mcudevice import Firmware, Output, Script, frames, job_document, run_host

pytestmark = pytest.mark.slow
EPN = "asan-dev"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        at = rng.randrange(len(b) + 1) if b else 0
        if kind == 0 and b:
            b[min(at, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b[at:at] = bytes(rng.choice(b'{}[]",:0123456789\\-') for _ in range(rng.randint(1, 8)))
        elif kind == 2:
            del b[at : at + rng.randint(1, 16)]
        elif kind == 3:
            b = b[: rng.randrange(len(b) + 1)]
        else:
            b[at:at] = rng.randbytes(rng.randint(1, 32))
    return bytes(b)


def _clean(out: Output) -> None:
    assert "Sanitizer" not in out.stderr and "runtime error" not in out.stderr, out.stderr[-3000:]
    assert out.code == 0, (out.code, out.stderr[-2000:])


@pytest.fixture(scope="module")
def update(firmware: Firmware) -> tuple[bytes, bytes, bytes]:
    old, new = firmware.image("1.0.0", seed=1), firmware.image("1.3.0", size=12000, seed=31)
    return old, new, firmware.package(new, "1.3.0", name="asan")


def test_clean_update_under_sanitizers(firmware: Firmware, update: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = update
    s = Script().provision(firmware, EPN).preload(0, old).boot().connect().job(job_document(package, EPN))
    for f in frames(package):
        s.block(f)
    out = run_host(s.wait(300).quit(), sanitized=True)
    _clean(out)
    assert out.final()["state"] == "SUCCEEDED", out.lines


def test_mutated_job_documents(firmware: Firmware, update: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = update
    rng = random.Random(20261130)
    docs = [job_document(package, EPN, execution_id=f"exec-{i}") for i in range(4)]
    s = Script().provision(firmware, EPN).preload(0, old).boot().connect()
    for _ in range(1500):
        s.job(_mutate(rng, rng.choice(docs)))
    _clean(run_host(s.quit(), sanitized=True))


def test_mutated_and_forged_frames(firmware: Firmware, update: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = update
    rng = random.Random(7)
    good = frames(package)
    s = Script().provision(firmware, EPN).preload(0, old).boot().connect().job(job_document(package, EPN))
    for i in range(2000):
        f = _mutate(rng, rng.choice(good))
        if i % 3 == 0 and len(f) > 13:  # a valid CRC over garbage: accepted, written, caught by verification
            index = rng.randrange(len(good))
            f = wire.encode_frame(42, index, len(good), f[13:])
        s.block(f)
        if i % 200 == 0:
            s.wait(60)
    for f in good:
        s.block(f)
    out = run_host(s.wait(300).quit(), sanitized=True)
    _clean(out)
    assert out.final()["state"] in ("SUCCEEDED", "REJECTED", "FAILED"), out.lines
