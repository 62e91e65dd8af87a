"""`ota-pack` through its CLI runner `packager.cli.main(argv, stdout, stderr)`, plus one real subprocess."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from packager.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
CREATED = "2026-01-01T00:00:00Z"
NOW = ("--now", "2026-01-15T00:00:00Z")  # verify at a fixed time, never the wall clock


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def keys(tmp_path):
    result = run("keygen", "--out", tmp_path / "keys")
    assert result.code == 0, result.err
    return tmp_path / "keys" / "publisher.key", tmp_path / "keys" / "publisher.pub"


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "app").write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
    (src / "bin" / "app").chmod(0o755)
    (src / "etc").mkdir()
    (src / "etc" / "app.conf").write_text("level = 1\n")
    (tmp_path / "install.sh").write_text("#!/bin/sh\necho install\n")
    return src


def _build(tmp_path, source, key, version="1.0.0", name="a.otapkg", *extra):
    out = tmp_path / name
    result = run("build", source, "--install", tmp_path / "install.sh", "--app", "demo", "--version", version,
                 "--model", "model-a", "--key", key, "--out", out, "--created", CREATED, *extra)
    assert result.code == 0, result.err
    return out


def test_keygen_writes_0600_key_and_prints_the_key_id(tmp_path, keys):
    key, pub = keys
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    again = run("keygen", "--out", tmp_path / "keys")
    assert again.code == 2 and "already exists" in again.err and again.err.count("\n") == 1
    other = run("keygen", "--out", tmp_path / "keys", "--name", "second")
    assert other.code == 0 and "key id " in other.out and "PRIVATE" not in other.out


def test_build_verify_ok(tmp_path, source, keys):
    key, pub = keys
    pkg = _build(tmp_path, source, key)
    result = run("verify", pkg, "--pubkey", pub, "--model", "model-a", *NOW)
    assert result.code == 0 and result.out.startswith("OK demo-1.0.0 "), result.out + result.err
    wrong = run("verify", pkg, "--pubkey", pub, "--model", "model-b", *NOW)
    assert wrong.code == 1 and wrong.out.startswith("REJECTED: wrong-model")


def test_build_is_deterministic_and_honours_source_date_epoch(tmp_path, source, keys):
    key, _ = keys
    one = _build(tmp_path, source, key, "1.0.0", "one.otapkg")
    two = _build(tmp_path, source, key, "1.0.0", "two.otapkg")
    assert one.read_bytes() == two.read_bytes()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600", "PYTHONPATH": str(ROOT)}  # 2026-01-01T00:00:00Z
    three = tmp_path / "three.otapkg"
    subprocess.run([sys.executable, "-m", "packager", "build", str(source), "--install", str(tmp_path / "install.sh"),
                    "--app", "demo", "--version", "1.0.0", "--model", "model-a", "--key", str(key),
                    "--out", str(three)], env=env, check=True, capture_output=True, timeout=120)
    assert three.read_bytes() == one.read_bytes()


def test_firmware_build(tmp_path, keys):
    key, pub = keys
    image = tmp_path / "fw.img"
    image.write_bytes(bytes(5000))
    result = run("build", "--firmware", image, "--app", "mcu-fw", "--version", "2.0.0", "--model", "mcu-1",
                 "--key", key, "--out", tmp_path, "--created", CREATED, "--expires", "30")
    assert result.code == 0, result.err
    pkg = tmp_path / "mcu-fw-2.0.0.otapkg"
    shown = json.loads(run("inspect", pkg, "--json").out)
    assert shown["verified"] is False
    assert shown["manifest"]["kind"] == "firmware" and shown["manifest"]["expires"] == "2026-01-31T00:00:00Z"
    assert [f["path"] for f in shown["manifest"]["files"]] == ["image.bin"]
    assert run("verify", pkg, "--pubkey", pub, "--model", "mcu-1", *NOW).code == 0


def test_delta_apply_and_wrong_base(tmp_path, source, keys):
    key, pub = keys
    old = _build(tmp_path, source, key, "1.0.0", "old.otapkg")
    (source / "bin" / "app").write_bytes(b"\x7fELF" + bytes(range(256)) * 39 + b"patched")
    new = _build(tmp_path, source, key, "1.1.0", "new.otapkg")
    made = run("delta", "--from", old, "--to", new, "--key", key, "--out", tmp_path / "d.otapkg", "--created", CREATED)
    assert made.code == 0, made.err
    ok = run("verify", tmp_path / "d.otapkg", "--pubkey", pub, "--base", old, *NOW)
    assert ok.code == 0 and "result=verified" in ok.out and "delta=1.0.0->1.1.0" in ok.out
    bad = run("verify", tmp_path / "d.otapkg", "--pubkey", pub, "--base", new, *NOW)
    assert bad.code == 1 and bad.out.startswith("REJECTED: base-mismatch")
    unapplied = run("verify", tmp_path / "d.otapkg", "--pubkey", pub, *NOW)
    assert unapplied.code == 0 and "not-applied" in unapplied.out
    base_is_delta = run("verify", tmp_path / "d.otapkg", "--pubkey", pub, "--base", tmp_path / "d.otapkg", *NOW)
    assert base_is_delta.code == 2


def test_delta_refuses_other_apps_and_untrusted_inputs(tmp_path, source, keys):
    key, _ = keys
    old = _build(tmp_path, source, key, "1.0.0", "old.otapkg")
    other = tmp_path / "other.otapkg"
    assert run("build", source, "--app", "other", "--version", "1.1.0", "--model", "m", "--key", key,
               "--out", other, "--created", CREATED).code == 0
    result = run("delta", "--from", old, "--to", other, "--key", key, "--out", tmp_path / "d.otapkg")
    assert result.code == 2 and "different apps" in result.err
    foreign = run("delta", "--from", FIXTURES / "good-full-1.0.0.otapkg", "--to", old, "--key", key,
                  "--out", tmp_path / "d.otapkg")
    assert foreign.code == 2 and "untrusted-key" in foreign.err


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verify_fixtures_through_the_cli(name):
    result = run("verify", FIXTURES / name, "--pubkey", FIXTURES / "publisher.pub", "--model", "model-a",
                 "--now", "2026-12-01T00:00:00Z")
    want = EXPECTED[name]
    if want["verdict"] == "accept":
        assert result.code == 0 and result.out.startswith("OK "), result.out
    else:
        assert result.code == 1 and result.out.startswith(f"REJECTED: {want['code']}: "), result.out
    assert result.out.count("\n") == 1 and not result.err


def test_inspect_labels_output_unverified_and_survives_hostile_input(tmp_path):
    text = run("inspect", FIXTURES / "hostile-dotdot-path.otapkg")
    assert text.code == 0 and text.out.startswith("UNVERIFIED") and "does not follow the schema" in text.out
    good = run("inspect", FIXTURES / "good-delta-1.0.0-to-1.1.0.otapkg")
    assert "delta:        from 1.0.0" in good.out and "(not checked)" in good.out
    garbage = run("inspect", FIXTURES / "not-a-package.bin")
    assert garbage.code == 2 and "bad magic" in garbage.out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["build", "--app", "demo"],
        ["verify", "missing.otapkg", "--pubkey", "missing.pub"],
        ["verify", str(FIXTURES / "good-full-1.0.0.otapkg"), "--pubkey", str(FIXTURES / "good-full-1.0.0.otapkg")],
        ["verify", str(FIXTURES / "good-full-1.0.0.otapkg"), "--pubkey", str(FIXTURES / "publisher.pub"),
         "--now", "yesterday"],
        ["inspect", "missing.otapkg"],
    ],
)
def test_usage_and_input_errors_exit_2_with_one_line(argv):
    result = run(*argv)
    assert result.code == 2
    assert result.err.startswith("ota-pack: error: ") and result.err.count("\n") == 1 and not result.out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--version", "1.0"], "version"),
        (["--version", "1.0.0", "--expires", "2020-01-01T00:00:00Z"], "expires"),
        (["--version", "1.0.0", "--label", "novalue"], "KEY=VALUE"),
        (["--version", "1.0.0", "--created", "253402300000", "--expires", "365"], "out of range"),
        (["--version", "1.0.0", "--expires", "0"], "days"),
    ],
)
def test_build_input_errors(tmp_path, source, keys, extra, message):
    key, _ = keys
    result = run("build", source, "--app", "demo", "--model", "m", "--key", key, "--out", tmp_path / "x.otapkg",
                 "--created", CREATED, *extra)
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1


def test_build_refuses_symlinks_and_bad_keys(tmp_path, source, keys):
    key, pub = keys
    (source / "link").symlink_to("/etc/passwd")
    linked = run("build", source, "--app", "demo", "--version", "1.0.0", "--model", "m", "--key", key,
                 "--out", tmp_path / "x.otapkg")
    assert linked.code == 2 and "symlink" in linked.err
    (source / "link").unlink()
    not_a_key = run("build", source, "--app", "demo", "--version", "1.0.0", "--model", "m", "--key", pub,
                    "--out", tmp_path / "x.otapkg")
    assert not_a_key.code == 2 and "private key" in not_a_key.err
    both = run("build", source, "--firmware", pub, "--app", "demo", "--version", "1.0.0", "--model", "m",
               "--key", key, "--out", tmp_path / "x.otapkg")
    assert both.code == 2 and "either" in both.err


def test_inspect_escapes_terminal_control_characters(tmp_path, source, keys):
    key, _ = keys
    pkg = _build(tmp_path, source, key, "1.0.0", "esc.otapkg", "--label", "note=\x1b[31mred\x07")
    for argv in (["inspect", pkg], ["inspect", pkg, "--json"]):
        result = run(*argv)
        assert result.code == 0 and "\x1b" not in result.out and "\x07" not in result.out
        assert "\\u001b[31mred" in result.out


def test_help_for_every_subcommand(capsys):
    for sub in ("keygen", "build", "delta", "verify", "inspect"):
        assert main([sub, "--help"]) == 0
        assert f"usage: ota-pack {sub}" in capsys.readouterr().out


def test_subprocess_help():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "packager", "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0 and "keygen" in proc.stdout and "inspect" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "packager", "verify"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
