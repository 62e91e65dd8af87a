"""The deployment side of the two ways in and of the malware engine: the staging bucket notifies the
staging queue for `uploads/` and `incoming/`, the staging function may read both (and, with GuardDuty,
their tags, and nothing more), `incoming/` expires like the quarantine, and `malware_engine=guardduty`
in infra/stage.json switches on a GuardDuty Malware Protection plan with tagging on both prefixes, its
role, and a bucket policy that lets only that role write the verdict tag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from infra import stage as stages

from .test_infra import chalice_sam_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return chalice_sam_template()


def copy_of_infra(tmp_path: Path) -> Path:
    for part in ("infra", ".chalice"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("deployments", "__pycache__"))
    return tmp_path


def test_the_staging_bucket_notifies_both_prefixes_and_expires_incoming(template):
    bucket = template["Resources"]["StagingBucket"]["Properties"]
    *queues, woken = bucket["NotificationConfiguration"]["QueueConfigurations"]
    prefixes = sorted(q["Filter"]["S3Key"]["Rules"][0]["Value"] for q in queues)
    assert prefixes == ["incoming/", "uploads/"]
    assert all(q["Event"] == "s3:ObjectCreated:*" and q["Queue"] == {"Fn::GetAtt": ["StagingQueue", "Arn"]}
               for q in queues)
    condition, tagging, otherwise = woken["Fn::If"]  # GuardDuty's verdict tag wakes a waiting slot
    assert condition == "UseGuardDuty" and otherwise == {"Ref": "AWS::NoValue"}
    assert tagging["Event"] == "s3:ObjectTagging:Put" and tagging["Filter"]["S3Key"]["Rules"][0]["Value"] == "uploads/"
    rules = {r["Prefix"]: r["ExpirationInDays"] for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules == {"uploads/": 90, "incoming/": 90}


def test_guardduty_resources_exist_only_with_the_guardduty_engine(template):
    resources, conditions = template["Resources"], template["Conditions"]
    assert conditions["UseGuardDuty"] == {"Fn::Equals": [{"Ref": "MalwareEngine"}, "guardduty"]}
    assert template["Parameters"]["MalwareEngine"]["AllowedValues"] == ["builtin", "guardduty"]
    plan = resources["StagingMalwareProtectionPlan"]
    assert plan["Type"] == "AWS::GuardDuty::MalwareProtectionPlan" and plan["Condition"] == "UseGuardDuty"
    assert plan["Properties"]["Actions"] == {"Tagging": {"Status": "ENABLED"}}
    assert plan["Properties"]["ProtectedResource"]["S3Bucket"]["ObjectPrefixes"] == ["uploads/", "incoming/"]
    role = resources["GuardDutyMalwareProtectionRole"]
    assert role["Condition"] == "UseGuardDuty"
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert trust == {"Service": "malware-protection-plan.guardduty.amazonaws.com"}
    actions = {a for s in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"s3:GetObject", "s3:PutObjectTagging", "events:PutRule", "s3:PutBucketNotification"} <= actions
    statements = resources["StagingBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    guarded = statements[1]["Fn::If"]
    assert guarded[0] == "UseGuardDuty" and guarded[2] == {"Ref": "AWS::NoValue"}
    deny = guarded[1]
    assert deny["Effect"] == "Deny" and "s3:PutObjectTagging" in deny["Action"] and "s3:PutObject" in deny["Action"]
    assert deny["Condition"]["ForAnyValue:StringEquals"] == {"s3:RequestObjectTagKeys": "GuardDutyMalwareScanStatus"}
    assert deny["Condition"]["ArnNotEquals"] == {"aws:PrincipalArn": {"Fn::GetAtt":
                                                                      ["GuardDutyMalwareProtectionRole", "Arn"]}}


@pytest.mark.parametrize(("engine", "tagging"), [("builtin", False), ("guardduty", True)])
def test_the_stage_names_the_engine_everywhere_and_the_staging_policy_follows(tmp_path, engine, tagging):
    root = copy_of_infra(tmp_path)
    assert stages.main(["--root", str(root), "set", f"malware_engine={engine}"]) == 0
    stage = stages.load(root)
    assert stages.environment(stage)["OTA_MALWARE_ENGINE"] == engine
    assert stages.parameters(stage)["MalwareEngine"] == engine
    config = json.loads((root / ".chalice" / "config.json").read_text())
    assert config["stages"]["dev"]["environment_variables"]["OTA_MALWARE_ENGINE"] == engine
    policy = json.loads((root / ".chalice" / "policy-on-staging-object.json").read_text())
    reads = {s["Sid"]: s for s in policy["Statement"] if s["Sid"] in ("StagingUploads", "StagingIncoming")}
    assert sorted(reads) == ["StagingIncoming", "StagingUploads"]
    for sid, prefix in (("StagingUploads", "uploads/*"), ("StagingIncoming", "incoming/*")):
        assert reads[sid]["Resource"][0]["Fn::Sub"].endswith(f"{stage.staging_bucket}/{prefix}")
        assert ("s3:GetObjectTagging" in reads[sid]["Action"]) is tagging
        assert set(reads[sid]["Action"]) <= {"s3:GetObject", "s3:GetObjectTagging"}  # never writes staging
    api = json.loads((root / ".chalice" / "policy-api-handler.json").read_text())
    assert "incoming/" not in json.dumps(api)  # the API never touches a pipeline's uploads


def test_an_unknown_engine_is_refused_by_the_stage(tmp_path):
    root = copy_of_infra(tmp_path)
    with pytest.raises(SystemExit, match="malware_engine must be one of builtin, guardduty"):
        stages.main(["--root", str(root), "set", "malware_engine=clamav"])
