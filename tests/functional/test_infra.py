"""The CloudFormation merge template is valid (cfn-lint, offline) and matches what the code expects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"


def test_template_passes_cfn_lint():
    cfnlint = pytest.importorskip("cfnlint.api", reason="cfn-lint could not be installed")
    matches = cfnlint.lint_file(TEMPLATE, config=cfnlint.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches] == []


def test_template_wires_the_pieces_the_code_relies_on():
    text = TEMPLATE.read_text()
    for needle in ("maxReceiveCount: 3", "encode(*, 'base64') AS payload_b64", "topic() AS topic",
                   "timestamp() AS received_at", "${!iot:Connection.Thing.ThingName}", "s3:ObjectCreated:*",
                   "Value: uploads/", "IndexName: gsi1", "IndexName: gsi2", "IndexName: gsi3"):
        assert needle in text, needle


def test_topic_rule_forwards_every_device_to_cloud_leaf_and_nothing_else():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load(TEMPLATE.read_text(), Loader=Loader)  # a SafeLoader subclass
    rules = [r for r in template["Resources"].values() if r["Type"] == "AWS::IoT::TopicRule"]
    [sql] = [r["Properties"]["TopicRulePayload"]["Sql"] for r in rules]
    where = " ".join(sql.split()).split(" WHERE ", 1)[1]
    for leaf in ("topic(3) = 'ack'", "topic(3) = 'get'", "topic(3) = 'status'",
                 "(topic(3) = 'cmd' AND topic(4) = 'result')"):
        assert leaf in where, leaf
    for leaf in ("'job'", "'blk'"):
        assert leaf not in where
    assert "OR topic(3) = 'cmd'" not in where  # the cloud's own commands must not loop back


def test_stage_config_names_every_required_setting():
    from chalicelib.settings import Settings

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    variables = config["stages"]["dev"]["environment_variables"]
    settings = Settings.from_env(variables)
    assert settings.auth == "iam" and settings.publisher == "iot-data" and settings.signer == "iot"
    policy = json.loads((ROOT / ".chalice" / config["stages"]["dev"]["iam_policy_file"]).read_text())
    assert any("iot:Publish" in str(s["Action"]) for s in policy["Statement"])
