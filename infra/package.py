"""`make package`: build the Lambda bundle and the SAM template, then prove them (`python -m infra.package`).

Does, in order: checks the derived stage files are current (infra/stage.py); vendors what Chalice does not
ship by itself into vendor/ (git-ignored): `otaformat` and the Amazon Root CA 1 certificate, taken from the
`certifi` package and checked by subject; runs `chalice package --stage <stage> --merge-template
infra/template.yaml out/` with the stage's region; then checks the result: (a) the six Handler lines of
out/sam.yaml are the expected ones, (b) `app` imports in a clean interpreter (`python -I -S`) with only
the unzipped deployment.zip on sys.path, (c) each handler answers a recorded AWS event (infra/events/)
against a moto server (infra/probe.py, run in that clean interpreter), and with Lambda's tracing
environment Powertools' Tracer sends the handlers' X-Ray subsegments, (d) cfn-lint passes on
out/sam.yaml, informational checks included. Prints one line per step; exits 1 on the first failure.
Does not: deploy, or need AWS credentials (moto stands in; Chalice needs PyPI to build the bundle and
keeps the dependencies cached in .chalice/deployments/).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra import stage as stages

ROOT = Path(__file__).resolve().parent.parent
# Chalice's logical ids of the six functions -> the probe's names for them
HANDLERS = {
    "APIHandler": ("api", "app.app"),
    "OperatorToken": ("authorizer", "chalicelib.api.auth.operator_token"),
    "OnStagingObject": ("staging", "chalicelib.triggers.staging.on_staging_object"),
    "OnDeviceMessage": ("device", "chalicelib.triggers.device_messages.on_device_message"),
    "OnFanout": ("fanout", "chalicelib.triggers.fanout.on_fanout"),
    "Sweep": ("sweep", "chalicelib.triggers.schedules.sweep"),
}
AMAZON_ROOT_CA_1 = "Amazon Root CA 1"


class PackageError(RuntimeError):
    """A step of `make package` failed; the message says which and why."""


def say(line: str) -> None:
    print(line, flush=True)


def amazon_root_ca() -> str:
    """The Amazon Root CA 1 certificate (PEM) from certifi's bundle (the block under its label), checked by subject."""
    import certifi
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    text = Path(certifi.where()).read_text(encoding="ascii")
    label = f'# Label: "{AMAZON_ROOT_CA_1}"'
    marker, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    if label not in text:
        raise PackageError(f"{AMAZON_ROOT_CA_1} is not in certifi's bundle ({certifi.where()})")
    block = text.split(label, 1)[1]
    pem = marker + block.split(marker, 1)[1].split(end, 1)[0] + end + "\n"
    names = {a.oid: a.value for a in x509.load_pem_x509_certificate(pem.encode()).subject}
    if names.get(NameOID.COMMON_NAME) != AMAZON_ROOT_CA_1 or names.get(NameOID.ORGANIZATION_NAME) != "Amazon":
        raise PackageError(f"certifi's {AMAZON_ROOT_CA_1} block has the subject {names}")
    return pem


def vendor(root: Path = ROOT) -> Path:
    """vendor/ = otaformat + AmazonRootCA1.pem (Chalice puts vendor/'s contents at the bundle's root)."""
    target = root / "vendor"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    shutil.copytree(root / "otaformat", target / "otaformat", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (target / stages.CA_FILE).write_text(amazon_root_ca(), encoding="ascii")
    return target


def chalice_package(stage: stages.Stage, out: Path, root: Path = ROOT) -> None:
    """`chalice package --stage S --merge-template infra/template.yaml OUT` with the stage's region."""
    shutil.rmtree(out, ignore_errors=True)
    chalice = Path(sys.executable).with_name("chalice")
    argv = [str(chalice), "package", "--stage", stage.stage, "--merge-template", "infra/template.yaml", str(out)]
    env = {**os.environ, "AWS_DEFAULT_REGION": stage.region}
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0 or not (out / "sam.yaml").exists():
        raise PackageError(f"chalice package failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation YAML template with its short-form tags read as {"Fn::Tag": value}."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            return {name: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {name: loader.construct_sequence(node, deep=True)}
        return {name: loader.construct_mapping(node, deep=True)}

    Loader.add_multi_constructor("!", tag)
    return yaml.load(path.read_text(), Loader=Loader)  # a SafeLoader subclass


def handlers(template: dict[str, Any]) -> dict[str, str]:
    """The probe's name -> Handler of each function in the packaged template; exactly the six expected."""
    found = {name: r["Properties"]["Handler"] for name, r in template["Resources"].items()
             if r["Type"] == "AWS::Serverless::Function"}
    expected = {name: handler for name, (_, handler) in HANDLERS.items()}
    if found != expected:
        raise PackageError(f"out/sam.yaml declares functions {found}, expected {expected}")
    return {HANDLERS[name][0]: handler for name, handler in found.items()}


def unzip(out: Path, into: Path) -> Path:
    with zipfile.ZipFile(out / "deployment.zip") as archive:
        archive.extractall(into)
    return into


def isolated(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with -I -S (no site-packages, no user site, no script dir, no PYTHON* variables)."""
    return subprocess.run([sys.executable, "-I", "-S", *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=tempfile.gettempdir())


def lambda_environment(template: dict[str, Any], stage: stages.Stage, endpoint: str) -> dict[str, str]:
    """The API function's packaged environment, pointed at `endpoint` (moto) with dummy credentials."""
    from infra.probe import TOKEN

    variables = template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    return {**{k: str(v) for k, v in variables.items()}, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": stage.region, "AWS_REGION": stage.region,
            "OTA_OPERATOR_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest()}


def check_imports(bundle: Path, env: dict[str, str]) -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import app, boto3; "
            "assert app.__file__.startswith(sys.argv[1]) and boto3.__file__.startswith(sys.argv[1])")
    done = isolated(["-c", code, str(bundle)], env)
    if done.returncode != 0:
        raise PackageError(f"the bundle's app does not import in a clean interpreter:\n{done.stderr[-3000:]}")


@contextmanager
def moto_server(directory: Path) -> Iterator[str]:
    """A moto server on a free loopback port (local/motoserver.py), stopped by its PID afterwards."""
    from local import motoserver, procs

    started, port = motoserver.start(directory)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop(started)


def tracing_environment(env: dict[str, str], bundle: Path) -> dict[str, str]:
    """`env` plus what Lambda sets for an actively traced invocation (the X-Ray SDK and Powertools read it)."""
    return {**env, "AWS_LAMBDA_FUNCTION_NAME": "ota-dev-probe", "LAMBDA_TASK_ROOT": str(bundle),
            "_X_AMZN_TRACE_ID": "Root=1-6751f0a0-3f1c2b4d5e6f708192a3b4c5;Parent=53995c3f42cd8ad8;Sampled=1"}


def probe(bundle: Path, env: dict[str, str], names: dict[str, str], root: Path = ROOT,
          mode: str = "") -> list[dict[str, Any]]:
    """Run infra/probe.py in the clean interpreter; its checks, one dict per line."""
    argv = [str(root / "infra" / "probe.py"), str(bundle), str(root / "infra" / "events"),
            str(root / "tests" / "fixtures"), json.dumps(names), *([mode] if mode else [])]
    done = isolated(argv, env)
    from infra.probe import PREFIX

    checks = [json.loads(line[len(PREFIX):]) for line in done.stdout.splitlines() if line.startswith(PREFIX)]
    if done.returncode != 0:
        raise PackageError(f"a handler failed its recorded event: {checks[-1:] or ''}\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-4000:]}")
    return checks


def lint(template: Path, regions: list[str]) -> list[str]:
    """cfn-lint's findings on `template`, informational checks included ([] = clean)."""
    import cfnlint.api

    config = cfnlint.api.ManualArgs(regions=regions, include_checks=["I"])
    return [str(m) for m in cfnlint.api.lint_file(template, config=config)]


def run(root: Path = ROOT, out: Path | None = None) -> dict[str, Any]:
    """Every step; returns a summary (handlers, probe checks, lint findings). Raises PackageError."""
    out = out or root / "out"
    stage = stages.load(root)
    if stages.stale(root):
        raise PackageError("derived stage files are out of date: run python -m infra.stage write")
    vendor(root)
    say(f"✔ vendored otaformat and {stages.CA_FILE} (from certifi) into vendor/")
    chalice_package(stage, out, root)
    say(f"✔ chalice package --stage {stage.stage} --merge-template infra/template.yaml {out} "
        f"(AWS_DEFAULT_REGION={stage.region})")
    template = load_template(out / "sam.yaml")
    names = handlers(template)
    say(f"✔ out/sam.yaml declares the six handlers: {', '.join(sorted(names.values()))}")
    with tempfile.TemporaryDirectory(prefix="ota-package-") as scratch:
        bundle = unzip(out, Path(scratch) / "bundle")
        if not (bundle / stages.CA_FILE).exists():
            raise PackageError(f"{stages.CA_FILE} is not at the bundle's root")
        with moto_server(Path(scratch)) as endpoint:
            env = lambda_environment(template, stage, endpoint)
            check_imports(bundle, env)
            say("✔ app imports with only the unzipped deployment.zip on sys.path (python -I -S)")
            checks = probe(bundle, env, names, root)
            checks += probe(bundle, tracing_environment(env, bundle), names, root, "trace")
        for item in checks:
            say(f"✔ {item['check']}")
    findings = lint(out / "sam.yaml", [stage.region])
    if findings:
        raise PackageError("cfn-lint on out/sam.yaml:\n" + "\n".join(findings))
    say("✔ cfn-lint passes on out/sam.yaml (informational checks included)")
    return {"handlers": names, "checks": checks, "lint": findings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="output directory (default: out/)")
    args = parser.parse_args(argv)
    try:
        run(ROOT, args.out)
    except PackageError as err:
        print(f"✘ {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
