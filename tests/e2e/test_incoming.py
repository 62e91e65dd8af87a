"""A release pipeline's own `aws s3 cp` into the staging bucket's `incoming/` on the local stack: the real
AWS CLI writes to moto server, moto notifies the staging queue, the bridge's pump runs the staging
handler (adding the requester moto leaves out), and `ota packages` shows the package with who uploaded
it. The same bytes copied again are the same package; a bad file is REJECTED with its reason."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local.scenario import Session

from .conftest import MODEL, WAIT, Release

pytestmark = pytest.mark.e2e
AWS_CLI = Path(sys.executable).parent / "aws"


def aws_s3_cp(state: dict[str, Any], path: Path, key: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTA_"))}
    env.update({k: v for k, v in state["env"].items() if k.startswith("AWS_")})
    done = subprocess.run([str(AWS_CLI), "s3", "cp", str(path), f"s3://{state['env']['OTA_STAGING_BUCKET']}/{key}"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def decided(s: Session, key: str) -> dict[str, Any]:
    """The package recorded for the incoming object `key`, once the stack has decided it."""
    found: list[dict[str, Any]] = []

    def listed() -> bool:
        found[:] = [p for p in s.ota("--json", "packages", "list", show=False).json()["packages"]
                    if p.get("staging_key") == key and p.get("state") != "PENDING"]
        return bool(found)

    assert s.wait_for(f"a package for {key}", listed, WAIT), f"no package for {key} after {WAIT}s"
    return found[0]


def test_aws_s3_cp_into_incoming_makes_a_package_with_its_uploader(e2e_stack: dict[str, Any], release: Release,
                                                                  tmp_path: Path) -> None:
    s = Session(e2e_stack, tmp_path, stream=io.StringIO())
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app").write_bytes(os.urandom(4096))
    package = tmp_path / "e2e-2.0.0.otapkg"
    s.pack("build", str(tmp_path / "src"), "--app", "e2e", "--version", "2.0.0", "--model", MODEL, "--key",
           str(release.key), "--compression", "none", "--out", str(package))
    first_key = f"incoming/e2e-2.0.0-{secrets.token_hex(4)}.otapkg"
    aws_s3_cp(e2e_stack, package, first_key)
    shown = decided(s, first_key)
    assert shown["state"] == "AVAILABLE" and shown["source"] == "s3", shown
    assert shown["uploaded_by"] == "local:testing" and shown["manifest"]["version"] == "2.0.0"
    table = s.ota("packages", "list", show=False).out
    assert any(shown["upload_id"] in line and "local:testing" in line for line in table.splitlines()), table

    bad = tmp_path / "not-a-package.otapkg"
    bad.write_bytes(b"these bytes are not an OTA package")
    bad_key = f"incoming/bad-{secrets.token_hex(4)}.otapkg"
    aws_s3_cp(e2e_stack, bad, bad_key)
    rejected = decided(s, bad_key)
    assert rejected["state"] == "REJECTED" and rejected["reasons"], rejected

    # the same bytes again, by the API this time: answered with the package the S3 upload made
    again = s.ota("--json", "packages", "upload", str(package), "--timeout", str(WAIT), show=False)
    assert again.code == 0 and again.json()["upload_id"] == shown["upload_id"], again.out + again.err
