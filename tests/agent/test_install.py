"""Policy rejections, scripts, rollback, firmware, delta, cancel and stall on the in-memory harness."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from otaformat import messages, wire

from .pkgtools import build_package, deliver, frames, job_for


def current(h, app="demo"):
    link = os.path.join(h.config.install_root, app, "current")
    return os.readlink(link) if os.path.islink(link) else None


def outcome(h):
    return [(s.state, s.reason) for s in h.transport.terminal()]


@pytest.mark.parametrize(
    ("build", "code"),
    [
        ({"models": ("other",)}, "wrong-model"),
        ({"expires": "2026-06-01T00:00:00Z"}, "expired"),
        ({"version": "0.9.0"}, "downgrade"),
    ],
)
def test_policy_rejections_before_download(harness, publisher, build, code):
    key, _ = publisher
    ok, env = build_package(key, version="1.0.0")
    deliver(harness, ok, env)
    package, envelope = build_package(key, **build)
    job = job_for(package, envelope)
    harness.job(job)
    last = harness.transport.terminal()[-1]
    assert (last.execution_id, last.state) == (job.execution_id, "REJECTED")
    assert code in (last.reason or "")
    assert not any(wire.decode_request(p).execution_id == job.execution_id for p in harness.transport.leaf("get"))
    assert current(harness) == "1.0.0"


def test_job_for_another_device_is_rejected(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key)
    harness.job(job_for(package, envelope, epn="dev-2"))
    assert outcome(harness)[0][0] == "REJECTED" and "dev-2" in outcome(harness)[0][1]
    assert current(harness) is None


def test_untrusted_key_is_rejected(harness):
    from .pkgtools import new_key

    package, envelope = build_package(new_key()[0])
    harness.job(job_for(package, envelope))
    assert outcome(harness)[0][0] == "REJECTED" and "untrusted-key" in outcome(harness)[0][1]


def test_corrupted_package_fails_and_keeps_old_version(harness, publisher):
    key, _ = publisher
    deliver(harness, *build_package(key, version="1.0.0"))
    package, envelope = build_package(key, version="1.1.0")
    job = job_for(package, envelope, block_size=256)
    bad = bytearray(package)
    bad[-5] ^= 1
    harness.job(job)
    fs = frames(job, package)
    fs[-1] = frames(job, bytes(bad))[-1]  # a frame with a valid CRC over wrong bytes
    for f in fs:
        harness.send("blk", f)
    assert outcome(harness)[-1][0] == "FAILED" and "SHA-256" in outcome(harness)[-1][1]
    assert current(harness) == "1.0.0"
    assert not os.path.exists(os.path.join(harness.config.data_dir, "spool", "current"))


def test_scripts_run_in_order_with_environment(harness, publisher, tmp_path):
    key, _ = publisher
    trace = tmp_path / "trace"
    script = f"#!/bin/sh\necho \"$OTA_ROLE $OTA_APP $OTA_VERSION\" >> {trace}\n"
    deliver(harness, *build_package(key, scripts={"pre-install": script, "install": script, "post-install": script}))
    assert outcome(harness) == [("SUCCEEDED", None)]
    assert trace.read_text().split("\n")[:3] == ["pre-install demo 1.0.0", "install demo 1.0.0",
                                                 "post-install demo 1.0.0"]
    logs = os.listdir(os.path.join(harness.config.data_dir, "logs"))
    assert "demo-1.0.0-install.log" in logs


@pytest.mark.parametrize(
    ("scripts", "reason"),
    [
        ({"install": "#!/bin/sh\necho boom\nexit 3\n"}, "exited with status 3"),
        ({"post-install": "#!/bin/sh\nexit 1\n"}, "post-install script exited"),
        ({"install": "#!/bin/sh\nsleep 60 &\nsleep 60\n"}, "timed out"),
        ({"install": "not a script"}, "cannot be started"),
    ],
)
def test_failing_script_rolls_back(harness, publisher, tmp_path, scripts, reason):
    key, _ = publisher
    deliver(harness, *build_package(key, version="1.0.0"))
    marker = tmp_path / "rolled-back"
    scripts = {**scripts, "rollback": f"#!/bin/sh\ntouch {marker}\n"}
    harness.config = replace(harness.config, script_timeout=0.5)
    harness.restart()
    deliver(harness, *build_package(key, version="2.0.0", scripts=scripts))
    state, text = outcome(harness)[-1]
    assert state == "FAILED" and reason in text
    assert current(harness) == "1.0.0"
    assert marker.exists()
    assert not os.path.exists(os.path.join(harness.config.install_root, "demo", "2.0.0"))
    assert harness.agent.store.data["apps"]["demo"] == "1.0.0"
    assert harness.agent.store.data["floors"]["demo"] == "1.0.0"


def test_firmware_image_is_written_as_image_bin(harness, publisher):
    key, _ = publisher
    image = bytes(range(256)) * 40
    deliver(harness, *build_package(key, app="mcu", kind="firmware", files={"fw.bin": image}))
    with open(os.path.join(harness.config.install_root, "mcu", "current", "image.bin"), "rb") as f:
        assert f.read() == image


@pytest.mark.parametrize("wanted", ["covers-xz", "bsdiff4-xz"])
def test_delta_applies_to_kept_base(harness, publisher, wanted):
    delta_mod = pytest.importorskip("otaformat.delta", reason="otaformat.delta is not available")
    import hashlib

    key, _ = publisher
    base = os.urandom(5000) + b"common tail" * 300
    target = base[:4000] + b"changed" * 50 + base[4000:]
    deliver(harness, *build_package(key, version="1.0.0", files={"bin/app": base}))
    encoding, patch = delta_mod.make_delta(base, target, (wanted,))
    assert encoding == wanted
    delta = {"base_version": "1.0.0", "base_sha256": hashlib.sha256(base).hexdigest(),
             "target_sha256": hashlib.sha256(target).hexdigest(), "target_length": len(target), "encoding": encoding}
    deliver(harness, *build_package(key, version="1.1.0", files={"bin/app": target}, delta=delta, patch=patch))
    assert outcome(harness)[-1] == ("SUCCEEDED", None)
    with open(os.path.join(harness.config.install_root, "demo", "current", "bin", "app"), "rb") as f:
        assert f.read() == target


def test_hostile_covers_patch_fails_and_keeps_the_base(harness, publisher):
    """A signed covers-xz patch whose one cover reads a byte past the end of the base: the decoder
    refuses it before reading, the job fails with the decoder's reason, the base stays installed."""
    import hashlib
    import lzma

    from otaformat import delta_covers

    key, _ = publisher
    base = b"base content " * 100
    target = b"X" + base
    # one cover: gap 1 ('X'), old delta zigzag(1) = 2, length = all of the base -> base[1 : len + 1]
    length = bytes([len(base) & 0x7F | 0x80, len(base) >> 7])  # a two-byte LEB128 varint
    streams = [bytes([1]), bytes([2]), length, b"", bytes(len(base)), b"X"]  # no zero runs: all diff bytes stored
    blobs = [lzma.compress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 4096}])
             for b in streams]
    patch = delta_covers.HEADER.pack(delta_covers.MAGIC, len(target), 1, 4096, len(base), *map(len, streams),
                                     *map(len, blobs[:5])) + b"".join(blobs)
    deliver(harness, *build_package(key, version="1.0.0", files={"bin/app": base}))
    delta = {"base_version": "1.0.0", "base_sha256": hashlib.sha256(base).hexdigest(),
             "target_sha256": hashlib.sha256(target).hexdigest(), "target_length": len(target),
             "encoding": "covers-xz"}
    deliver(harness, *build_package(key, version="1.1.0", files={"bin/app": target}, delta=delta, patch=patch))
    state, reason = outcome(harness)[-1]
    assert state in ("FAILED", "REJECTED") and "outside the base" in reason
    assert current(harness) == "1.0.0"


def test_delta_for_other_base_is_rejected(harness, publisher):
    import hashlib

    key, _ = publisher
    deliver(harness, *build_package(key, version="1.0.0"))
    delta = {"base_version": "0.5.0", "base_sha256": "0" * 64, "target_sha256": hashlib.sha256(b"t").hexdigest(),
             "target_length": 1, "encoding": "bsdiff4"}
    deliver(harness, *build_package(key, version="1.1.0", files={"bin/app": b"t"}, delta=delta, patch=b"junk"))
    state, reason = outcome(harness)[-1]
    assert state == "REJECTED" and "base" in reason
    assert current(harness) == "1.0.0"


def test_stall_budget_fails_the_download(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key)
    job = job_for(package, envelope, block_size=256)
    harness.job(job)
    harness.send("blk", frames(job, package)[0])
    for _ in range(40):
        harness.idle(1.0)
    state, reason = outcome(harness)[-1]
    assert state == "FAILED" and "stalled" in reason
    gets = harness.transport.leaf("get")
    assert len(gets) >= 3  # repair requests went out before giving up
    assert wire.decode_request(gets[-1]).wanted(job.block_count) == list(range(1, job.block_count))


def test_cancel_during_download(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key)
    job = job_for(package, envelope, block_size=256)
    harness.job(job)
    harness.send("blk", frames(job, package)[0])
    harness.send("job", messages.encode(messages.Cancel(job.execution_id)))
    assert outcome(harness) == [("FAILED", "canceled by the cloud before install")]
    assert harness.agent.state == "IDLE"
    for f in frames(job, package):
        harness.send("blk", f)
    assert current(harness) is None


def test_republished_job_after_finish_repeats_outcome(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key)
    job = deliver(harness, package, envelope)
    harness.job(job)
    assert [s for s, _ in outcome(harness)] == ["SUCCEEDED", "SUCCEEDED"]
    assert len(harness.transport.leaf("get")) == 1


def test_managed_apps_limit_what_is_accepted(harness, publisher):
    key, _ = publisher
    harness.restart(managed_apps=("demo",))
    deliver(harness, *build_package(key, app="other"))
    state, reason = outcome(harness)[-1]
    assert state == "REJECTED" and "not managed" in reason


def test_same_version_again_is_already_installed(harness, publisher):
    key, _ = publisher
    package, envelope = build_package(key)
    deliver(harness, package, envelope)
    deliver(harness, package, envelope)
    assert outcome(harness) == [("SUCCEEDED", None), ("SUCCEEDED", "demo 1.0.0 already installed")]
    assert current(harness) == "1.0.0"
    with open(os.path.join(harness.config.data_dir, "history.txt")) as f:
        assert len(f.read().splitlines()) == 1  # nothing was installed the second time


@pytest.mark.parametrize(("leaf", "size"), [("blk", wire.FRAME_HEADER.size + 120 * 1024 + 1), ("job", 120 * 1024 + 1)])
def test_oversized_messages_dropped_before_decoding(harness, leaf, size):
    harness.send(leaf, b"\xff" * size)
    assert harness.agent.dropped == {"oversized": 1}
    assert harness.transport.sent == []


def test_cancel_that_arrives_while_verifying_wins_over_install(harness, publisher):
    from agent.transport import Message

    key, _ = publisher
    package, envelope = build_package(key)
    job = job_for(package, envelope, block_size=256)
    harness.job(job)
    fs = frames(job, package)
    for f in fs[:-1]:
        harness.send("blk", f)
    harness.agent.inbox.put(Message("job", messages.encode(messages.Cancel(job.execution_id))))
    harness.send("blk", fs[-1])  # completes: VERIFYING sees the queued cancel before installing
    assert outcome(harness) == [("FAILED", "canceled by the cloud before install")]
    assert current(harness) is None


def test_current_that_is_a_real_directory_fails_cleanly(harness, publisher):
    key, _ = publisher
    blocker = os.path.join(harness.config.install_root, "demo", "current")
    os.makedirs(os.path.join(blocker, "keep"))
    deliver(harness, *build_package(key))
    state, reason = outcome(harness)[0]
    assert state == "FAILED" and "install failed" in reason
    assert os.path.isdir(os.path.join(blocker, "keep")) and harness.agent.state == "IDLE"
    assert not os.path.exists(os.path.join(harness.config.install_root, "demo", "1.0.0"))


def test_install_root_reached_through_a_symlink_is_resolved_once(config, publisher, tmp_path):
    from .conftest import Harness

    real = tmp_path / "real-root"
    real.mkdir()
    (tmp_path / "link-root").symlink_to(real)
    h = Harness(replace(config, install_root=str(tmp_path / "link-root")))
    deliver(h, *build_package(publisher[0]))
    assert outcome(h) == [("SUCCEEDED", None)]
    assert os.readlink(real / "demo" / "current") == "1.0.0"


def test_symlink_planted_as_app_directory_fails_without_crash_loop(harness, publisher, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.makedirs(harness.config.install_root, exist_ok=True)
    os.symlink(outside, os.path.join(harness.config.install_root, "demo"))
    deliver(harness, *build_package(publisher[0]))
    state, reason = outcome(harness)[0]
    assert state == "FAILED" and "symbolic link" in reason and harness.agent.state == "IDLE"
    assert list(outside.iterdir()) == []
