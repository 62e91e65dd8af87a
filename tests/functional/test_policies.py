"""Least privilege, read from the packaged template (Chalice's SAM output merged with infra/template.yaml,
built offline like `chalice package`) and from the policy files: one role per function, no wildcard
data-plane resource, ARNs in the stack's partition, publishes only on the cloud-to-device leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import stage as stages

from .test_infra import chalice_sam_template

ROOT = Path(__file__).resolve().parents[2]
DATA_PLANE = ("dynamodb:", "s3:", "sqs:", "iot:")
ROLES = {"APIHandler": "ApiHandlerRole", "OperatorToken": "OperatorTokenRole", "OnStagingObject": "OnStagingObjectRole",
         "OnDeviceMessage": "OnDeviceMessageRole", "Sweep": "SweepRole"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return chalice_sam_template()


def statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    [policy] = template["Resources"][role]["Properties"]["Policies"]
    return list(policy["PolicyDocument"]["Statement"])


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def arn_text(resource: Any) -> str:
    return resource["Fn::Sub"] if isinstance(resource, dict) else str(resource)


def test_each_function_has_its_own_role(template):
    for function, role in ROLES.items():
        assert template["Resources"][function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    assert len({json.dumps(statements(template, r), sort_keys=True) for r in ROLES.values()}) == len(ROLES)


def violations(policy_statements: list[dict[str, Any]]) -> list[str]:
    """Every resource that is a wildcard for a data-plane action, not in the stack's partition, or in
    another region or account ("*" only for actions that support no resource scope)."""
    found = []
    for statement in policy_statements:
        for resource in resources(statement):
            text = arn_text(resource)
            if text == "*":
                if not set(actions(statement)) <= stages.RESOURCELESS_ACTIONS:
                    found.append(f"{statement.get('Sid')}: * for {actions(statement)}")
                continue
            if not (isinstance(resource, dict) and text.startswith("arn:${AWS::Partition}:")):
                found.append(f"{statement.get('Sid')}: {text} is not in the stack's partition")
                continue
            parts = text.replace("${AWS::Partition}", "PARTITION").replace("${AWS::Region}", "REGION") \
                .replace("${AWS::AccountId}", "ACCOUNT").split(":", 5)
            _, _, service, region, account, name = parts
            if any(a.startswith(DATA_PLANE) for a in actions(statement)) and service != "logs":
                if (region, account) not in (("REGION", "ACCOUNT"), ("", "")):
                    found.append(f"{statement.get('Sid')}: {text} names another region or account")
                if name in ("*", "table/*", "*/*", "topic/*", "topic/ota/*") or name.startswith("*"):
                    found.append(f"{statement.get('Sid')}: {text} is a wildcard")
    return found


@pytest.mark.parametrize("role", sorted(ROLES.values()))
def test_no_wildcard_data_plane_resource_and_arns_in_the_stack_partition(template, role):
    assert all(s["Effect"] == "Allow" for s in statements(template, role))
    assert violations(statements(template, role)) == []


def test_the_check_catches_wildcards_other_partitions_and_accounts():
    sub = "arn:${AWS::Partition}"
    bad = [{"Sid": "A", "Action": "sqs:ReceiveMessage", "Resource": "*"},
           {"Sid": "B", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::bucket/*"]},
           {"Sid": "C", "Action": ["dynamodb:Query"], "Resource": [{"Fn::Sub": f"{sub}:dynamodb:*:*:table/ota-dev"}]},
           {"Sid": "D", "Action": ["iot:Publish"], "Resource": [{"Fn::Sub": f"{sub}:iot:${{AWS::Region}}:"
                                                                           "${AWS::AccountId}:topic/*"}]}]
    assert [v.split(":")[0] for v in violations(bad)] == ["A", "B", "C", "D"]


def test_no_literal_aws_partition_in_the_packaged_template(template):
    assert "arn:aws:" not in json.dumps(template)


def by_role(template: dict[str, Any], role: str) -> dict[str, list[str]]:
    """action -> the resource ARNs (Fn::Sub text) it is allowed on, for one role."""
    allowed: dict[str, list[str]] = {}
    for statement in statements(template, role):
        for action in actions(statement):
            allowed.setdefault(action, []).extend(arn_text(r) for r in resources(statement))
    return allowed


def test_the_api_handler_cannot_read_queues(template):
    """It queues job fan-out work (send only); reading or deleting messages is the consumers' business."""
    assert sorted(a for a in by_role(template, "ApiHandlerRole") if a.startswith("sqs:")) == [
        "sqs:GetQueueUrl", "sqs:SendMessage"]


def test_the_fanout_consumer_publishes_but_cannot_touch_the_registry(template):
    actions = by_role(template, "OnFanoutRole")
    assert [a for a in actions if a.startswith("iot:")] == ["iot:Publish"]
    assert "dynamodb:BatchWriteItem" not in actions and "dynamodb:DeleteItem" not in actions


def test_the_device_message_consumer_cannot_touch_the_registry(template):
    iot = [a for a in by_role(template, "OnDeviceMessageRole") if a.startswith("iot:")]
    assert iot == ["iot:Publish"]


def test_the_authorizer_touches_nothing_but_its_logs(template):
    assert set(by_role(template, "OperatorTokenRole")) == {"logs:CreateLogStream", "logs:PutLogEvents",
                                                           "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


@pytest.mark.parametrize("role", ["ApiHandlerRole", "OnDeviceMessageRole", "SweepRole"])
def test_the_cloud_publishes_only_on_cloud_to_device_leaves(template, role):
    topics = by_role(template, role)["iot:Publish"]
    prefix = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/ota/*/"
    assert sorted(topics) == sorted(prefix + leaf for leaf in ("job", "blk", "cmd"))


def test_registry_actions_are_scoped_to_things_certificates_and_the_device_policy(template):
    stage = stages.load()
    prefix = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:"
    scoped = {prefix + "thing/*", prefix + "cert/*", prefix + f"policy/{stage.device_policy}"}
    for action, arns in by_role(template, "ApiHandlerRole").items():
        if action.startswith("iot:") and action != "iot:Publish" and action not in stages.RESOURCELESS_ACTIONS:
            assert set(arns) <= scoped, action
    for role in set(ROLES.values()) - {"ApiHandlerRole"}:
        registry = [a for a in by_role(template, role) if a.startswith("iot:") and a != "iot:Publish"]
        assert registry == [], role


def test_only_the_staging_consumer_reads_the_staging_queue_and_only_it_writes_packages(template):
    stage = stages.load()
    for role in ROLES.values():
        allowed = by_role(template, role)
        queues = allowed.get("sqs:ReceiveMessage", [])
        expected = {"OnStagingObjectRole": [stage.staging_queue], "OnDeviceMessageRole": [stage.device_queue]}
        assert [q.rsplit(":", 1)[1] for q in queues] == expected.get(role, []), role
        writes = [r for r in allowed.get("s3:PutObject", []) if stage.repository_bucket in r]
        assert bool(writes) == (role == "OnStagingObjectRole"), role


def test_policy_files_are_the_ones_the_stage_derives():
    assert stages.stale(ROOT) == []
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    functions = config["stages"]["dev"]["lambda_functions"]
    assert set(functions) == set(stages.FUNCTIONS)
    for name, settings in functions.items():
        document = json.loads((ROOT / ".chalice" / settings["iam_policy_file"]).read_text())
        assert document == stages.policies(stages.load(ROOT))[name]
