"""Protocol behaviour of the C library, scripted, on the host build (and the power cut under QEMU too).

Power cut mid-transfer, repeated job documents, cancel, stall, a repeated final status, the
block-frame checks of docs/protocol.md 4.3, a failed self-test and MCUboot's revert, the version floor,
hostile job documents and a manifest changed after signing, with real packages and frames from otaformat.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from otaformat import wire

from .mcudevice import Firmware, Output, Script, frames, job_document, pack, run_host, run_qemu

EPN = "replay-dev"


def start(fw: Firmware, package: bytes, running: bytes, epn: str = EPN, **job: int) -> Script:
    return Script().provision(fw, epn).preload(0, running).boot().connect().job(job_document(package, epn, **job))


@pytest.fixture(scope="module")
def images(firmware: Firmware) -> tuple[bytes, bytes, bytes]:
    old, new = firmware.image("1.0.0", seed=1), firmware.image("2.0.0", size=40000, seed=5)
    return old, new, firmware.package(new, "2.0.0", name="replay")


@pytest.mark.parametrize("where", ["host", pytest.param("qemu", marks=pytest.mark.slow)])
def test_power_cut_mid_transfer_resumes_from_the_persisted_bitmap(
        firmware: Firmware, images: tuple[bytes, bytes, bytes], where: str, tmp_path: Path) -> None:
    old, new, package = images
    fr = frames(package)
    s = start(firmware, package, old)
    for f in fr[: len(fr) // 2]:
        s.block(f)
    s.wait(100)  # idle ack: these blocks are now durable
    for f in fr[len(fr) // 2 : len(fr) // 2 + 3]:
        s.block(f)  # received but never acknowledged: the power goes
    s.boot().connect()  # power cut: RAM lost, flash and KV kept
    s.wait(10)
    for f in fr[len(fr) // 2 :]:
        s.block(f)
    s.wait(300).hash_slot(0, len(new))
    out = run_host(s.quit()) if where == "host" else run_qemu(s.quit(), tmp_path)
    gets = out.published("get")
    assert len(gets) >= 2, out.lines
    resumed = wire.decode_request(json.dumps(gets[1], separators=(",", ":")).encode())
    wanted = set(wire.indices_from_bitmap(resumed.offset, resumed.bitmap, len(fr)))
    assert wanted == set(range(len(fr) // 2, len(fr))), "after the cut it asks exactly for what was not acked"
    assert out.final()["state"] == "SUCCEEDED", out.lines
    assert out.value("HASH 0") == hashlib.sha256(new).hexdigest()


def test_republished_job_asks_again_and_finished_job_repeats_its_status(
        firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = images
    doc = job_document(package, EPN)
    s = start(firmware, package, old).job(doc)  # same execution while downloading: a new get after 1 s
    s.wait(1100).job(doc)
    for f in frames(package):
        s.block(f)
    s.wait(300).job(doc)  # finished: the final status again, new seq
    out = run_host(s.quit())
    finals = [st for st in out.statuses() if st["state"] != "IN_PROGRESS"]
    assert [f["state"] for f in finals] == ["SUCCEEDED", "SUCCEEDED"], out.lines
    assert finals[1]["seq"] > finals[0]["seq"]
    assert len(out.published("get")) >= 2


def test_cancel_stops_the_download(firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = images
    s = start(firmware, package, old).block(frames(package)[0])
    s.job(b'{"execution_id":"exec-1","type":"cancel","v":1}')
    out = run_host(s.quit())
    assert out.final() | {"seq": 0} == {"progress": 1, "reason": "canceled by the cloud before install", "seq": 0,
                                         "state": "FAILED", "type": "status", "v": 1, "x": "exec-1"}


def test_stalled_download_fails(firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = images
    out = run_host(start(firmware, package, old).wait(121_000).quit())
    assert out.final()["state"] == "FAILED" and out.final()["reason"].startswith("download stalled")
    gets = out.published("get")
    assert 5 <= len(gets) <= 25, "repair requests back off from 1 s to 8 s"


def test_frames_failing_a_check_change_nothing(firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = images
    fr = frames(package)
    short = wire.encode_frame(42, 0, len(fr), package[:100])  # wrong length for block 0
    wrong_total = wire.encode_frame(42, 0, len(fr) + 1, package[:1024])
    v2 = b"\x02" + fr[0][1:]
    s = start(firmware, package, old)
    for f in (short, wrong_total, v2, fr[0][:13], fr[0] + b"x"):
        s.block(f)
    s.wait(200)
    out = run_host(s.quit())
    assert out.published("ack") == [], out.lines  # nothing held, nothing acknowledged


def test_another_devices_job_is_rejected(firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = images
    s = Script().provision(firmware, EPN).preload(0, old).boot().connect().job(job_document(package, "someone-else"))
    out = run_host(s.quit())
    assert out.final()["state"] == "REJECTED" and "another device" in out.final()["reason"]


def test_unaligned_package_is_refused(firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    """A firmware package built without --mcuboot (payload at an arbitrary offset, zstd) is refused."""
    old, new, _ = images
    (firmware.work / "plain.img").write_bytes(new)
    out_pkg = firmware.work / "plain.otapkg"
    pack("build", "--firmware", str(firmware.work / "plain.img"), "--app", "mcu-fw", "--version", "2.0.0",
         "--model", "mcu-m4", "--key", str(firmware.keys / "publisher.key"), "--out", str(out_pkg))
    out: Output = run_host(start(firmware, out_pkg.read_bytes(), old).quit())
    assert out.final()["state"] == "REJECTED"
    assert "ota-pack --mcuboot" in out.final()["reason"]


def test_failed_self_test_is_reported_and_the_bootloader_reverts(
        firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = images
    s = start(firmware, package, old).self_test(False)
    for f in frames(package):
        s.block(f)
    s.wait(300)  # verify, swap request, reboot into the trial image, self-test fails: not confirmed
    s.boot().connect().wait(10).hash_slot(0, len(old))  # the next reset: MCUboot reverts
    out = run_host(s.quit())
    assert out.final()["state"] == "FAILED" and out.final()["reason"].startswith("self-test"), out.lines
    assert "BOOT swapped" in out.lines and "BOOT reverted" in out.lines
    assert out.value("HASH 0") == hashlib.sha256(old).hexdigest()
    assert out.inventories()[-1]["apps"] == {"mcu-fw": "1.0.0"}


def test_the_floor_rises_with_each_update(firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    """After 1.0.0 -> 2.0.0, re-sending a 1.x package (validly signed) is a downgrade."""
    old, _, package = images
    back = firmware.package(firmware.image("1.5.0", seed=6), "1.5.0", name="back")
    s = start(firmware, package, old)
    for f in frames(package):
        s.block(f)
    s.wait(300).job(job_document(back, EPN, execution_id="exec-2"))
    out = run_host(s.quit())
    finals = [st for st in out.statuses() if st["state"] != "IN_PROGRESS"]
    assert [(f["x"], f["state"]) for f in finals] == [("exec-1", "SUCCEEDED"), ("exec-2", "REJECTED")], out.lines
    assert finals[1]["reason"].startswith("downgrade: ")


def _hostile(doc: bytes) -> list[bytes]:
    """Job documents that are not canonical JSON or not well-formed: each must be dropped unanswered."""
    text = doc.decode()
    return [
        text.replace(",", ", ", 1).encode(),                          # whitespace
        text.replace('{"block_count"', '{"v":1,"block_count"', 1).encode(),  # unsorted / duplicate key
        ('{"a":' * 40 + "1" + "}" * 40).encode(),                    # nesting beyond 16
        text[:-1].encode(),                                           # truncated
        text.replace('"block_size":1024', '"block_size":1024.0', 1).encode(),  # a float
        b"\xff\xfe" + doc,                                            # garbage
        b"",
    ]


def test_hostile_job_documents_are_dropped(firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = images
    doc = job_document(package, EPN)
    s = Script().provision(firmware, EPN).preload(0, old).boot().connect()
    for bad in _hostile(doc):
        s.job(bad)
    out = run_host(s.quit())
    assert out.code == 0 and out.statuses() == [] and out.published("get") == [], out.lines


def test_a_manifest_changed_after_signing_is_rejected(firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, _, package = images
    doc = job_document(package, EPN).replace(b'"models":["mcu-m4"]', b'"models":["mcu-m5"]')
    out = run_host(Script().provision(firmware, EPN, model="mcu-m5").preload(0, old).boot().connect().job(doc).quit())
    assert out.final()["state"] == "REJECTED" and out.final()["reason"].startswith("bad-signature: "), out.lines


def test_power_cut_before_verification_verifies_after_the_reset(
        firmware: Firmware, images: tuple[bytes, bytes, bytes]) -> None:
    old, new, package = images
    s = start(firmware, package, old)
    for f in frames(package):
        s.block(f)  # complete and persisted as VERIFYING; no tick yet: the power goes now
    s.boot().connect().wait(300).hash_slot(0, len(new))
    out = run_host(s.quit())
    steps = [(st["state"], st.get("step")) for st in out.statuses()]
    assert steps[-2:] == [("IN_PROGRESS", "INSTALLING"), ("SUCCEEDED", None)], out.lines
    assert out.value("HASH 0") == hashlib.sha256(new).hexdigest()
