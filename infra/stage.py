"""The stage definition (infra/stage.json) and everything derived from it.

Does: read infra/stage.json, the one place naming the region, table, buckets, queues, device policy and
MQTT endpoint; derive from it the stage's environment and per-function settings in .chalice/config.json
and one least-privilege IAM policy per Lambda function (.chalice/policy-<function>.json, resources as
`Fn::Sub` with `${AWS::Partition}`, `${AWS::Region}`, `${AWS::AccountId}`: `chalice package` copies
the documents verbatim into the SAM template, where CloudFormation resolves them); print the template's
parameter overrides and the operators' IAM policy.
`python -m infra.stage write|check|parameters|get KEY|set KEY=VALUE...|operator-policy`.
Does not: deploy, talk to AWS, or build the bundle (infra/package.py does).

The policy files hold CloudFormation intrinsics, so they work with `chalice package` (the supported path)
and not with `chalice deploy`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CA_FILE = "AmazonRootCA1.pem"  # shipped at the bundle's root by infra/package.py (from certifi)
# Chalice's function names: the API handler, the built-in authorizer, the two SQS consumers, the schedule.
FUNCTIONS = ("api_handler", "operator_token", "on_staging_object", "on_device_message", "on_fanout", "sweep")
CLOUD_TO_DEVICE_LEAVES = ("job", "blk", "cmd")  # the only topics the cloud publishes on (never device topics)
# Actions that support no resource-level permissions (IAM Service Authorization Reference): "*" is required.
RESOURCELESS_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords",
                                  "iot:CreateCertificateFromCsr"})
TABLE_READ_WRITE = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:ConditionCheckItem",
                    "dynamodb:UpdateItem", "dynamodb:BatchGetItem"]  # job counters (ADD), targets read in batches
TABLE_ADMIN = ["dynamodb:DeleteItem", "dynamodb:BatchWriteItem"]  # keys removed, jobs created: the API only
SQS_CONSUMER = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
# Reserved concurrency (a cap and a reservation): the sweeper must never run twice at once (an overlapping
# sweep would resend the same overdue blocks); everything else scales freely, the SQS consumers are capped
# by their event source mapping's MaximumConcurrency instead (infra/template.yaml).
RESERVED_CONCURRENCY = {"sweep": 1}
MALWARE_ENGINES = ("builtin", "guardduty")  # chalicelib/settings.py reads the same names


@dataclass(frozen=True)
class Stage:
    stage: str
    region: str
    app_name: str
    stack_name: str
    table: str
    staging_bucket: str
    repository_bucket: str
    staging_queue: str
    device_queue: str
    device_policy: str
    mqtt_host: str
    log_retention_days: int
    fanout_queue: str = "ota-dev-fanout"
    console_origin: str = ""  # the web console's origin (CloudFront), allowed by CORS; "" = none
    malware_engine: str = "builtin"  # OTA_MALWARE_ENGINE and the template's MalwareEngine: builtin | guardduty


def load(root: Path = ROOT) -> Stage:
    """The stage named in `root`/infra/stage.json (keys starting with '_' are comments)."""
    data = json.loads((root / "infra" / "stage.json").read_text())
    stage = Stage(**{k: v for k, v in data.items() if not k.startswith("_")})
    if stage.malware_engine not in MALWARE_ENGINES:
        raise SystemExit(f"infra/stage.json: malware_engine must be one of {', '.join(MALWARE_ENGINES)}")
    return stage


def environment(stage: Stage) -> dict[str, str]:
    """The Lambda environment of the stage (chalicelib/settings.py reads it)."""
    return {
        "OTA_TABLE_NAME": stage.table,
        "OTA_STAGING_BUCKET": stage.staging_bucket,
        "OTA_REPOSITORY_BUCKET": stage.repository_bucket,
        "OTA_STAGING_QUEUE": stage.staging_queue,
        "OTA_DEVICE_QUEUE": stage.device_queue,
        "OTA_FANOUT_QUEUE": stage.fanout_queue,
        "OTA_PUBLISHER": "iot-data",
        "OTA_SIGNER": "iot",
        "OTA_AUTH": "iam",
        "OTA_MQTT_HOST": stage.mqtt_host,
        "OTA_MQTT_PORT": "8883",
        "OTA_MQTT_CA": CA_FILE,
        "OTA_IOT_POLICY_NAME": stage.device_policy,
        "OTA_DEVICE_PUBLISH_RATE": "85",
        "OTA_DEVICE_BYTE_RATE": "524288",  # IoT Core's 512 KiB/s: budgeted per second (chalicelib/domain/pacing.py)
        "OTA_MALWARE_ENGINE": stage.malware_engine,
        **({"OTA_CONSOLE_ORIGIN": stage.console_origin} if stage.console_origin else {}),
    }


def parameters(stage: Stage) -> dict[str, str]:
    """infra/template.yaml's parameters for this stage (`aws cloudformation deploy --parameter-overrides`)."""
    return {"TableName": stage.table, "StagingBucketName": stage.staging_bucket,
            "RepositoryBucketName": stage.repository_bucket, "StagingQueueName": stage.staging_queue,
            "DeviceQueueName": stage.device_queue, "FanoutQueueName": stage.fanout_queue,
            "DevicePolicyName": stage.device_policy, "MalwareEngine": stage.malware_engine}


def arn(service: str, resource: str, *, regional: bool = True) -> dict[str, str]:
    """An ARN in the stack's partition, region and account, as a CloudFormation Fn::Sub."""
    where = "${AWS::Region}:${AWS::AccountId}" if regional else ":"
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:{service}:{where}:{resource}"}


def _statement(sid: str, actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def _base() -> list[dict[str, Any]]:
    logs = arn("logs", "log-group:/aws/lambda/${AWS::StackName}-*")
    return [_statement("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [logs]),
            _statement("Tracing", ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"])]


def _table(stage: Stage, admin: bool = False) -> dict[str, Any]:
    actions = TABLE_READ_WRITE + (TABLE_ADMIN if admin else [])
    return _statement("Table", actions, [arn("dynamodb", f"table/{stage.table}"),
                                         arn("dynamodb", f"table/{stage.table}/index/*")])


def _s3(sid: str, actions: list[str], bucket: str, prefix: str) -> dict[str, Any]:
    return _statement(sid, actions, [arn("s3", f"{bucket}/{prefix}*", regional=False)])


def _staging_reads(stage: Stage) -> list[dict[str, Any]]:
    """What the staging scan reads: upload slots' objects and a pipeline's `incoming/` ones (services/
    incoming.py), and with the GuardDuty engine their GuardDutyMalwareScanStatus tag (adapters/malware.py)."""
    actions = ["s3:GetObject"] + (["s3:GetObjectTagging"] if stage.malware_engine == "guardduty" else [])
    return [_s3("StagingUploads", actions, stage.staging_bucket, "uploads/"),
            _s3("StagingIncoming", actions, stage.staging_bucket, "incoming/")]


def _list(buckets: list[str]) -> dict[str, Any]:
    """ListBucket lets a HEAD on a missing key answer 404 instead of 403."""
    return _statement("ListForHead", ["s3:ListBucket"], [arn("s3", b, regional=False) for b in buckets])


def _publish() -> dict[str, Any]:
    topics = [arn("iot", f"topic/ota/*/{leaf}") for leaf in CLOUD_TO_DEVICE_LEAVES]
    return _statement("PublishCloudToDevice", ["iot:Publish"], topics)


def _consume(queue: str) -> dict[str, Any]:
    return _statement("Queue", SQS_CONSUMER, [arn("sqs", queue)])


def _send(queue: str, sid: str = "SendFanout") -> dict[str, Any]:
    return _statement(sid, ["sqs:SendMessage", "sqs:GetQueueUrl"], [arn("sqs", queue)])


def _registry(stage: Stage) -> list[dict[str, Any]]:
    policy = arn("iot", f"policy/{stage.device_policy}")
    return [
        _statement("SignDeviceCsr", ["iot:CreateCertificateFromCsr"], ["*"]),
        _statement("Certificates", ["iot:DescribeCertificate", "iot:UpdateCertificate"], [arn("iot", "cert/*")]),
        _statement("Things", ["iot:CreateThing", "iot:AttachThingPrincipal", "iot:DetachThingPrincipal"],
                   [arn("iot", "thing/*"), arn("iot", "cert/*")]),
        _statement("DevicePolicy", ["iot:GetPolicy", "iot:AttachPolicy", "iot:DetachPolicy"],
                   [policy, arn("iot", "cert/*")]),
    ]


def policies(stage: Stage) -> dict[str, dict[str, Any]]:
    """One policy per Chalice function: what its code path calls, on the stage's resources only."""
    staging, repository = stage.staging_bucket, stage.repository_bucket
    statements: dict[str, list[dict[str, Any]]] = {
        # routes: keys, devices (registry), upload slots (presigned PUT), jobs (job documents, first windows)
        "api_handler": [_table(stage, admin=True),
                        _s3("StagingUploads", ["s3:GetObject", "s3:PutObject"], staging, "uploads/"),
                        _s3("RepositoryPackages", ["s3:GetObject"], repository, "packages/"),
                        _list([staging, repository]), _publish(), *_registry(stage), _send(stage.fanout_queue)],
        "operator_token": [],  # compares a hash with its environment; touches nothing
        "on_staging_object": [_table(stage), _consume(stage.staging_queue), *_staging_reads(stage),
                              _s3("RepositoryPackages", ["s3:GetObject", "s3:PutObject"], repository, "packages/"),
                              _list([staging, repository])],
        "on_device_message": [_table(stage), _consume(stage.device_queue),
                              _s3("RepositoryPackages", ["s3:GetObject"], repository, "packages/"),
                              _list([repository]), _publish(), _send(stage.device_queue, "SendWakes")],
        "on_fanout": [_table(stage), _consume(stage.fanout_queue), _send(stage.fanout_queue),
                      _s3("RepositoryPackages", ["s3:GetObject"], repository, "packages/"),
                      _list([repository]), _publish()],
        "sweep": [_table(stage), _s3("RepositoryPackages", ["s3:GetObject"], repository, "packages/"),
                  _list([repository]), _publish()],
    }
    return {name: {"Version": "2012-10-17", "Statement": _base() + extra} for name, extra in statements.items()}


def operator_policy(stage: Stage, account: str, rest_api_id: str) -> dict[str, Any]:
    """The IAM policy an operator needs for `ota` against the deployed API: execute-api:Invoke on it, only."""
    import botocore.session

    partition = botocore.session.get_session().get_partition_for_region(stage.region)
    api = f"arn:{partition}:execute-api:{stage.region}:{account}:{rest_api_id}/api/*/*"
    return {"Version": "2012-10-17",
            "Statement": [{"Sid": "InvokeOtaApi", "Effect": "Allow", "Action": "execute-api:Invoke", "Resource": api}]}


def policy_file(function: str) -> str:
    return f"policy-{function.replace('_', '-')}.json"


def chalice_config(stage: Stage, current: dict[str, Any]) -> dict[str, Any]:
    """`current` (.chalice/config.json) with the stage's environment and per-function settings derived."""
    config = json.loads(json.dumps(current))
    entry = config.setdefault("stages", {}).setdefault(stage.stage, {})
    entry.pop("iam_policy_file", None)
    entry.update({"autogen_policy": False, "xray": True, "log_retention_in_days": stage.log_retention_days,
                  "environment_variables": environment(stage)})
    entry["lambda_functions"] = {
        name: {"iam_policy_file": policy_file(name),
               **({"reserved_concurrency": RESERVED_CONCURRENCY[name]} if name in RESERVED_CONCURRENCY else {})}
        for name in FUNCTIONS
    }
    config["app_name"] = stage.app_name
    return config


def derived_files(stage: Stage, root: Path = ROOT) -> dict[Path, str]:
    """Every file derived from the stage, path -> exact text."""
    chalice = root / ".chalice"
    current = json.loads((chalice / "config.json").read_text())
    files = {chalice / "config.json": json.dumps(chalice_config(stage, current), indent=2) + "\n"}
    for name, document in policies(stage).items():
        files[chalice / policy_file(name)] = json.dumps(document, indent=2) + "\n"
    return files


def stale(root: Path = ROOT) -> list[Path]:
    """Derived files that differ from what infra/stage.json gives."""
    return [p for p, text in derived_files(load(root), root).items() if not p.exists() or p.read_text() != text]


def write(root: Path = ROOT) -> list[Path]:
    changed = stale(root)
    for path, text in derived_files(load(root), root).items():
        if path in changed:
            path.write_text(text)
    return changed


def set_values(assignments: list[str], root: Path = ROOT) -> None:
    """Change keys of infra/stage.json (`key=value`), then rewrite the derived files."""
    path = root / "infra" / "stage.json"
    data = json.loads(path.read_text())
    fields = asdict(load(root))
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"infra.stage set: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        data[key] = int(value) if isinstance(fields[key], int) else value
    path.write_text(json.dumps(data, indent=2) + "\n")
    write(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="project directory (default: this checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write", help="rewrite .chalice/config.json and the policies from infra/stage.json")
    sub.add_parser("check", help="exit 1 if a derived file is out of date")
    sub.add_parser("parameters", help="print the template's parameter overrides (Key=Value ...)")
    get = sub.add_parser("get", help="print one value of infra/stage.json")
    get.add_argument("key")
    operator = sub.add_parser("operator-policy", help="print the IAM policy for operators (execute-api:Invoke)")
    operator.add_argument("--account", required=True)
    operator.add_argument("--rest-api-id", required=True)
    setter = sub.add_parser("set", help="change values of infra/stage.json and rewrite the derived files")
    setter.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.command == "write":
        for path in write(args.root):
            print(f"wrote {path.relative_to(args.root)}")
    elif args.command == "check":
        late = stale(args.root)
        for path in late:
            print(f"{path.relative_to(args.root)} is out of date: run python -m infra.stage write", file=sys.stderr)
        return 1 if late else 0
    elif args.command == "parameters":
        print(" ".join(f"{k}={v}" for k, v in parameters(load(args.root)).items()))
    elif args.command == "get":
        print(asdict(load(args.root))[args.key])
    elif args.command == "operator-policy":
        print(json.dumps(operator_policy(load(args.root), args.account, args.rest_api_id), indent=2))
    else:
        set_values(args.assignments, args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
