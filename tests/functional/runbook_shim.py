"""What stands in for AWS and the deployed API while tests/functional/test_runbook.py runs infra/README.md.

`python -m tests.functional.runbook_shim aws|ota|ota-agent|make ARGS...` (the runbook's shell calls these
through functions of the same name). Every command is first checked against its real parser: `aws`
against the AWS CLI's own argument tables (service, operation, options, required options), `ota`
against cli.parser, `ota-agent` against its argparse. Then:
- `aws`: runs for real (the AWS CLI, against the moto server in AWS_ENDPOINT_URL), except the
  CloudFormation stack commands moto cannot serve for a SAM template: `deploy` creates the stack's data
  resources with chalicelib's provisioning (plus a versioned repository holding one package),
  `describe-stacks` answers outputs shaped like the stack's, Lambda's `get-account-settings` (not in
  moto) answers a standard account's limits, `delete-stack` deletes what the stack owns
  (queues, the staging bucket, which must be empty) and keeps what it retains, `wait` returns;
- `ota`: answers like the API would (docs/api.md shapes); devices add / rm act on moto's IoT registry
  (a thing and a certificate; rm deregisters with chalicelib's IotRegistry);
- `ota-agent --check` runs for real; `make setup|package` are checked to exist (test_package runs it).
Each call appends one line to $RUNBOOK_LOG: `<mode> <argv>` (mode: real, emulated, syntax).
Does not: talk to real AWS (AWS_ENDPOINT_URL must be set), or run anything but these four commands.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3

VENV_BIN = Path(sys.executable).parent
REST_API_ID = "abc123def4"
STATE = "runbook-state.json"  # in the working directory: what the emulated stack and API remember


def log(mode: str, argv: list[str]) -> None:
    with open(os.environ["RUNBOOK_LOG"], "a") as handle:
        handle.write(f"{mode} {shlex.join(argv)}\n")


def fail(message: str) -> None:
    print(f"runbook shim: {message}", file=sys.stderr)
    sys.exit(2)


def state() -> dict[str, Any]:
    path = Path(STATE)
    return json.loads(path.read_text()) if path.exists() else {}


def remember(**values: Any) -> None:
    Path(STATE).write_text(json.dumps({**state(), **values}))


def stage() -> Any:
    sys.path.insert(0, os.getcwd())  # the runbook's checkout (its infra/stage.json)
    from infra import stage as stages

    return stages.load(Path.cwd())


# --- aws -------------------------------------------------------------------------------------------

def aws_syntax(argv: list[str]) -> None:
    """Fail unless the AWS CLI knows the command, each option, and gets its required options."""
    from awscli.clidriver import create_clidriver

    driver = create_clidriver()
    global_args = set(driver._get_argument_table())
    if argv == ["--version"]:
        return
    service = driver._get_command_table().get(argv[0])
    if service is None:
        fail(f"aws {argv[0]}: no such service")
    table = service.subcommand_table if hasattr(service, "subcommand_table") else service._get_command_table()
    command = table.get(argv[1])
    if command is None:
        fail(f"aws {argv[0]} {argv[1]}: no such command")
    if argv[1] == "wait":
        command = command.subcommand_table.get(argv[2]) or fail(f"aws {' '.join(argv[:3])}: no such waiter")
    known = set(command.arg_table) | global_args
    given = [a[2:] for a in argv if a.startswith("--")]
    unknown = [g for g in given if g not in known]
    if unknown:
        fail(f"aws {argv[0]} {argv[1]}: unknown options {unknown}")
    missing = [n for n, a in command.arg_table.items() if getattr(a, "required", False)
               and not getattr(a, "positional_arg", False) and n not in given]
    if missing:
        fail(f"aws {argv[0]} {argv[1]}: missing required options {missing}")


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def output(argv: list[str], answer: Any) -> None:
    """Apply --query and --output like the AWS CLI (text: tab-separated scalars; else JSON)."""
    import jmespath

    if "--query" in argv:
        answer = jmespath.search(option(argv, "--query"), answer)
    if "--output" in argv and option(argv, "--output") == "text":
        values = answer if isinstance(answer, list) else [answer]
        print("\t".join(str(v) for v in values))
    else:
        print(json.dumps(answer, indent=2))


def session() -> Any:
    return boto3.session.Session()


def deploy(argv: list[str]) -> None:
    from chalicelib.adapters.provision import ensure_resources
    from chalicelib.settings import Settings

    s = stage()
    overrides = dict(p.split("=", 1) for p in argv[argv.index("--parameter-overrides") + 1:] if "=" in p)
    assert overrides["StagingBucketName"] == s.staging_bucket, overrides
    env = {"OTA_TABLE_NAME": overrides["TableName"], "OTA_STAGING_BUCKET": overrides["StagingBucketName"],
           "OTA_REPOSITORY_BUCKET": overrides["RepositoryBucketName"],
           "OTA_STAGING_QUEUE": overrides["StagingQueueName"],
           "OTA_DEVICE_QUEUE": overrides["DeviceQueueName"], "OTA_PUBLISHER": "iot-data", "OTA_SIGNER": "local-ca",
           "OTA_LOCAL_CA_DIR": "unused", "OTA_AUTH": "iam", "OTA_MQTT_HOST": s.mqtt_host, "OTA_MQTT_PORT": "8883"}
    urls = ensure_resources(Settings.from_env(env), session())
    s3 = session().client("s3")
    s3.put_bucket_versioning(Bucket=s.repository_bucket, VersioningConfiguration={"Status": "Enabled"})
    for version in (b"first", b"second"):  # a package published twice: two versions to delete at teardown
        s3.put_object(Bucket=s.repository_bucket, Key="packages/demo/1.0.0/x.otapkg", Body=version)
    s3.put_object(Bucket=s.staging_bucket, Key="uploads/u1", Body=b"an upload")
    remember(stack=option(argv, "--stack-name"), queues=list(urls.values()))
    print(f"Successfully created/updated stack - {option(argv, '--stack-name')}")


def describe_stacks(argv: list[str]) -> None:
    if state().get("stack") != option(argv, "--stack-name"):
        fail(f"Stack with id {option(argv, '--stack-name')} does not exist")
    s = stage()
    outputs = {"EndpointURL": f"https://{REST_API_ID}.execute-api.{s.region}.amazonaws.com/api/",
               "RestAPIId": REST_API_ID, "StagingBucketName": s.staging_bucket,
               "RepositoryBucketName": s.repository_bucket, "TableArn": f"arn:aws:dynamodb:::table/{s.table}"}
    output(argv, {"Stacks": [{"StackName": state()["stack"], "StackStatus": "CREATE_COMPLETE",
                              "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]})


def delete_stack(argv: list[str]) -> None:
    """Delete what the stack owns; a non-empty staging bucket fails the deletion, as on AWS."""
    s, client = stage(), session()
    s3 = client.client("s3")
    if s3.list_objects_v2(Bucket=s.staging_bucket).get("KeyCount"):
        fail(f"DELETE_FAILED: bucket {s.staging_bucket} is not empty")
    s3.delete_bucket(Bucket=s.staging_bucket)
    sqs = client.client("sqs")
    for url in state()["queues"]:
        sqs.delete_queue(QueueUrl=url)
    remember(stack=None)


def account_settings(argv: list[str]) -> None:
    """moto has no Lambda GetAccountSettings: AWS's answer for a standard account."""
    output(argv, {"AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                                   "CodeSizeZipped": 52428800, "ConcurrentExecutions": 1000,
                                   "UnreservedConcurrentExecutions": 1000},
                  "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0}})


def aws(argv: list[str]) -> None:
    if not os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1"):
        fail("AWS_ENDPOINT_URL must name the local moto server")
    aws_syntax(argv)
    emulated = {("cloudformation", "deploy"): deploy, ("cloudformation", "describe-stacks"): describe_stacks,
                ("cloudformation", "delete-stack"): delete_stack, ("cloudformation", "wait"): lambda a: None,
                ("lambda", "get-account-settings"): account_settings}
    action = emulated.get((argv[0], argv[1])) if len(argv) > 1 else None
    if action is not None:
        log("emulated", ["aws", *argv])
        action(argv)
        return
    log("real", ["aws", *argv])
    sys.exit(subprocess.run([str(VENV_BIN / "aws"), *argv]).returncode)


# --- ota -------------------------------------------------------------------------------------------

def ota(argv: list[str]) -> None:
    from cli.parser import build_parser

    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        fail(f"ota {shlex.join(argv)}: not a valid command line")
    log("syntax", ["ota", *argv])
    iot = session().client("iot")
    if (args.group, args.action) == ("devices", "add"):
        iot.create_thing(thingName=args.epn, attributePayload={"attributes": {"model": args.model}})
        cert = iot.create_keys_and_certificate(setAsActive=True)
        iot.attach_thing_principal(thingName=args.epn, principal=cert["certificateArn"])
        remember(device={"epn": args.epn, "certificate_id": cert["certificateId"], "arn": cert["certificateArn"]})
        print(json.dumps({"epn": args.epn, "model": args.model, "state": "PREAUTHORIZED",
                          "registration_token": "runbook-one-time-token", "token_expires": "2026-12-08T10:00:00.000Z"}))
    elif (args.group, args.action) == ("devices", "show"):
        device = state()["device"]
        print(json.dumps({"epn": device["epn"], "model": "m1", "state": "REGISTERED",
                          "certificate_id": device["certificate_id"]}))
    elif (args.group, args.action) == ("devices", "rm"):
        from chalicelib.adapters.certificates import IotRegistry

        device = state()["device"]
        IotRegistry(iot, stage().device_policy).deregister(device["epn"], device["certificate_id"], device["arn"])
        print(json.dumps({"epn": device["epn"], "state": "DEREGISTERED"}))
    elif (args.group, args.action) == ("packages", "list"):
        print(json.dumps({"packages": [{"upload_id": "0123456789abcdef0123456789abcdef", "state": "AVAILABLE"}]}))
    elif (args.group, args.action) == ("jobs", "create"):
        print(json.dumps({"job_id": "job-runbook", "state": "ACTIVE", "package_id": args.package}))


# --- ota-agent, make ---------------------------------------------------------------------------------

def ota_agent(argv: list[str]) -> None:
    if "--check" in argv:
        log("real", ["ota-agent", *argv])
        sys.exit(subprocess.run([str(VENV_BIN / "ota-agent"), *argv]).returncode)
    log("syntax", ["ota-agent", *argv])


def make(argv: list[str]) -> None:
    makefile = (Path(os.environ["RUNBOOK_PROJECT"]) / "Makefile").read_text()
    for target in argv:
        if f"\n{target}:" not in makefile:
            fail(f"make {target}: no such target")
    if "package" in argv and not Path("out/sam.yaml").exists():
        fail("make package: out/sam.yaml is missing")
    log("syntax", ["make", *argv])


def main(argv: list[str]) -> int:
    commands = {"aws": aws, "ota": ota, "ota-agent": ota_agent, "make": make}
    commands[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
