"""infra/README.md, run: every ```sh block, in order, in one bash, in a copy of the deployment files.

`aws` runs for real against a moto server (the CloudFormation stack commands are checked against the AWS
CLI's parser and emulated, moto cannot deploy a SAM template), `ota` is checked against its parser and
answers like the API, `python -m infra.stage`, `ota-pack` and `ota-agent --check` run for real
(tests/functional/runbook_shim.py). `make package` itself is run by test_package.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from .test_infra import chalice_sam_template

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # about 40 s: each aws call is a fresh AWS CLI process
README = ROOT / "infra" / "README.md"
VENV_BIN = Path(sys.executable).parent
SHIMMED = ("aws", "ota", "ota-agent", "make")


def blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """The block's command lines (heredoc bodies and comments left out)."""
    lines, heredoc = [], None
    for line in block.splitlines():
        if heredoc:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append(line.strip())
        found = re.search(r"<<'?(\w+)'?", line)
        heredoc = found.group(1) if found else None
    return lines


@pytest.fixture
def moto_endpoint(tmp_path: Path) -> Iterator[str]:
    from local import motoserver, procs

    started, port = motoserver.start(tmp_path)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop(started)


def workdir(tmp_path: Path) -> Path:
    """A copy of what the runbook reads and writes, with out/ as `make package` leaves it."""
    work = tmp_path / "checkout"
    for part in ("infra", ".chalice"):
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("deployments", "__pycache__"))
    (work / "out").mkdir()
    (work / "out" / "sam.yaml").write_text(json.dumps(chalice_sam_template()))  # JSON is YAML
    shutil.copy(ROOT / "tests" / "fixtures" / "good-full-1.0.0.otapkg", work / "out" / "deployment.zip")
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "activate").write_text(f'export PATH="{VENV_BIN}:$PATH"\n')
    return work


def script(readme: str) -> str:
    functions = "\n".join(f'{name}() {{ "{sys.executable}" -m tests.functional.runbook_shim {name} "$@"; }}'
                          for name in SHIMMED)
    return "set -euo pipefail\n" + functions + "\n" + "\n".join(blocks(readme))


def test_every_command_of_the_runbook_runs(tmp_path, moto_endpoint):
    work, log = workdir(tmp_path), tmp_path / "runbook.log"
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "AWS_ENDPOINT_URL": moto_endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONPATH": str(ROOT), "RUNBOOK_LOG": str(log), "RUNBOOK_PROJECT": str(ROOT)}
    aws = boto3.session.Session(region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    aws.client("iam", endpoint_url=moto_endpoint).create_user(UserName="alice")
    done = subprocess.run(["bash", "-c", script(README.read_text())], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    ran = [line for line in log.read_text().splitlines() if line[:1].isalpha()]  # one line per call
    readme_commands = [c for b in blocks(README.read_text()) for c in commands(b)]
    calls = [m for c in readme_commands for m in re.findall(r"(?:^|\$\(|&& |\| )(aws|ota-agent|ota|make)\b(?!-)", c)]
    assert len(ran) == len(calls), (ran, calls)  # every aws/ota/ota-agent/make of the runbook went through a shim
    assert any(r.startswith("real aws cloudformation package") for r in ran)
    assert any(r.startswith("emulated aws cloudformation deploy") for r in ran)
    assert any(r.startswith("real ota-agent --config device/agent.toml --check") for r in ran)
    assert any(r.startswith("real aws s3 cp demo.otapkg s3://ota-dev-staging-123456789012/incoming/") for r in ran)

    stage = json.loads((work / "infra" / "stage.json").read_text())
    assert stage["staging_bucket"] == "ota-dev-staging-123456789012" and stage["mqtt_host"].endswith("amazonaws.com")
    config = json.loads((work / ".chalice" / "config.json").read_text())
    variables = config["stages"]["dev"]["environment_variables"]
    assert variables["OTA_REPOSITORY_BUCKET"] == "ota-dev-repository-123456789012"
    assert variables["OTA_MALWARE_ENGINE"] == "guardduty"  # the runbook chooses a real engine for AWS
    policy = json.loads((work / "out" / "operator-policy.json").read_text())
    assert policy["Statement"][0]["Resource"].endswith(":123456789012:abc123def4/api/*/*")
    agent = (work / "device" / "agent.toml").read_text()
    assert 'api_url = "https://abc123def4.execute-api.' in agent and 'token = "runbook-one-time-token"' in agent

    # back to nothing: no bucket, table, queue, thing, certificate or operator policy is left
    def client(name: str):
        return aws.client(name, endpoint_url=moto_endpoint)

    for region in ("us-east-1", "eu-west-1"):
        regional = boto3.session.Session(region_name=region, aws_access_key_id="t", aws_secret_access_key="t")
        assert regional.client("dynamodb", endpoint_url=moto_endpoint).list_tables()["TableNames"] == []
        assert regional.client("sqs", endpoint_url=moto_endpoint).list_queues().get("QueueUrls", []) == []
        assert regional.client("iot", endpoint_url=moto_endpoint).list_things()["things"] == []
        assert regional.client("iot", endpoint_url=moto_endpoint).list_certificates()["certificates"] == []
    assert client("s3").list_buckets()["Buckets"] == []
    assert client("iam").list_policies(Scope="Local")["Policies"] == []


def test_the_runbook_names_the_real_files_and_the_region():
    text = README.read_text()
    assert "out/sam.json" not in text and "out/sam.yaml" in text
    assert "AWS_DEFAULT_REGION" in text and "make package" in text
    for needed in ("describe-stacks", "execute-api:Invoke", "keys add", "agent.toml", "delete-stack"):
        assert needed in text, needed


def test_emulated_commands_still_face_the_aws_cli_parser(monkeypatch, tmp_path):
    from tests.functional import runbook_shim

    monkeypatch.setenv("RUNBOOK_LOG", str(tmp_path / "log"))
    runbook_shim.aws_syntax(["cloudformation", "deploy", "--template-file", "t", "--stack-name", "s"])
    with pytest.raises(SystemExit):
        runbook_shim.aws_syntax(["cloudformation", "deploy", "--template-file", "t"])  # no --stack-name
    with pytest.raises(SystemExit):
        runbook_shim.aws_syntax(["cloudformation", "deploy", "--stack-name", "s", "--template-file", "t",
                                 "--parameters-overrides", "A=1"])  # misspelt option
    with pytest.raises(SystemExit):
        runbook_shim.aws_syntax(["cloudformation", "wait", "stack-deleted", "--stack-name", "s"])


