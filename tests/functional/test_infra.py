"""The CloudFormation merge template, merged with Chalice's SAM output offline (the template alone names
Chalice's resources, so only the merge is a whole template), passes cfn-lint with informational checks,
matches what the code expects, and agrees with infra/stage.json (the one place naming the resources).
`make package` (test_package.py) lints the real packaged template too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"


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
    assert settings.mqtt_ca == "AmazonRootCA1.pem"  # shipped at the bundle's root by infra/package.py
    functions = config["stages"]["dev"]["lambda_functions"]
    policy = json.loads((ROOT / ".chalice" / functions["on_device_message"]["iam_policy_file"]).read_text())
    assert any("iot:Publish" in str(s["Action"]) for s in policy["Statement"])


def test_one_place_names_the_resources_and_everything_else_agrees():
    """infra/stage.json names them; config.json's environment, the policies, the template's parameter
    defaults and the recorded staging event are derived from it or checked against it."""
    from infra import stage as stages

    stage = stages.load(ROOT)
    assert stages.stale(ROOT) == [], "run python -m infra.stage write"
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["stages"][stage.stage]["environment_variables"] == stages.environment(stage)
    assert config["app_name"] == stage.app_name
    parameters = _merge_template()["Parameters"]
    for name, value in stages.parameters(stage).items():
        assert parameters[name].get("Default", value) == value, name
    assert parameters["ApiName"]["Default"] == stage.app_name
    assert stage.staging_bucket in (ROOT / "infra" / "events" / "sqs-s3-notification.json").read_text()
    derived = {str(p.relative_to(ROOT)) for p in stages.derived_files(stage, ROOT)}
    assert derived == {".chalice/config.json", *(f".chalice/{stages.policy_file(f)}" for f in stages.FUNCTIONS)}


def test_stage_set_rewrites_every_derived_file(tmp_path):
    import shutil

    from infra import stage as stages

    for part in ("infra", ".chalice"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("deployments", "__pycache__"))
    assert stages.main(["--root", str(tmp_path), "set", "staging_bucket=ota-dev-staging-123456789012"]) == 0
    assert stages.main(["--root", str(tmp_path), "check"]) == 0
    config = json.loads((tmp_path / ".chalice" / "config.json").read_text())
    assert config["stages"]["dev"]["environment_variables"]["OTA_STAGING_BUCKET"] == "ota-dev-staging-123456789012"
    assert "ota-dev-staging-123456789012/uploads/*" in (tmp_path / ".chalice" / "policy-api-handler.json").read_text()


def _merge_template() -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: loader.construct_scalar(node)}
                                 if isinstance(node, yaml.ScalarNode) else {suffix: None})
    return yaml.load(TEMPLATE.read_text(), Loader=Loader)  # a SafeLoader subclass


def chalice_sam_template() -> dict:
    """What `chalice package --merge-template infra/template.yaml` writes, without building the zip:
    Chalice's own resource graph and SAM generator, a stub instead of the pip-based packager, then
    Chalice's deep merge with the template. Offline, under a second."""
    import botocore.session
    from chalice.awsclient import TypedAWSClient
    from chalice.cli.factory import CLIFactory
    from chalice.deploy import deployer, models
    from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder
    from chalice.deploy.swagger import CFNSwaggerGenerator
    from chalice.package import PackageOptions, SAMTemplateGenerator, TemplateDeepMerger, YAMLTemplateSerializer
    from chalice.policy import AppPolicyGenerator
    from chalice.utils import OSUtils

    class StubPackager:
        def handle(self, config, resource):
            if isinstance(resource, models.DeploymentPackage):
                resource.filename = "deployment.zip"

    config = CLIFactory(str(ROOT)).create_config_obj("dev")
    resources = DependencyBuilder().build_dependencies(ApplicationGraphBuilder().build(config, "dev"))
    steps = [deployer.InjectDefaults(), StubPackager(),
             deployer.PolicyGenerator(AppPolicyGenerator(OSUtils()), OSUtils()),
             deployer.SwaggerBuilder(CFNSwaggerGenerator()), deployer.LambdaEventSourcePolicyInjector()]
    deployer.BuildStage(steps=steps).execute(config, resources)
    session = botocore.session.get_session()
    session.set_config_variable("region", "us-east-1")
    generated = SAMTemplateGenerator(config, PackageOptions(TypedAWSClient(session))).generate(resources)
    merge = YAMLTemplateSerializer().load_template(TEMPLATE.read_text())
    return TemplateDeepMerger().merge(merge, generated)


def test_device_message_mapping_reports_batch_item_failures():
    """The handler answers with partial batch responses; without ReportBatchItemFailures on the event
    source mapping Lambda would ignore them and delete every record of the batch, failed ones included."""
    [mapping] = _merge_template()["Resources"]["OnDeviceMessage"]["Properties"]["Events"].values()
    assert mapping["Type"] == "SQS"
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["Properties"]["Queue"] == {"Sub": "${DeviceQueue.Arn}"}


def test_chalice_package_output_merged_with_the_template_has_partial_batch_responses(tmp_path):
    cfnlint = pytest.importorskip("cfnlint.api", reason="cfn-lint could not be installed")
    merged = chalice_sam_template()
    function = merged["Resources"]["OnDeviceMessage"]
    assert function["Properties"]["Handler"] == "chalicelib.triggers.device_messages.on_device_message"
    events = function["Properties"]["Events"]
    assert list(events) == ["OnDeviceMessageSqsEventSource"]  # the template's key is the one Chalice writes
    properties = events["OnDeviceMessageSqsEventSource"]["Properties"]
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["Queue"] == {"Fn::Sub": "${DeviceQueue.Arn}"} and properties["BatchSize"] == 10
    [staging] = merged["Resources"]["OnStagingObject"]["Properties"]["Events"].values()
    assert staging["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert staging["Properties"]["Queue"] == {"Fn::Sub": "${StagingQueue.Arn}"}  # not the name seen at packaging
    out = tmp_path / "sam.json"
    out.write_text(json.dumps(merged))
    config = cfnlint.ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"])
    assert [str(m) for m in cfnlint.lint_file(out, config=config)] == []


def test_operations_resources_are_declared():
    resources = _merge_template()["Resources"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}
    assert {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"),
            ("AWS/ApiGateway", "5XXError"), ("AWS/IoT", "Failure"), ("AWS/IoT", "ParseError")} <= metrics
    lambda_alarms = [a for a in alarms.values() if a["Namespace"] == "AWS/Lambda"]
    assert len(lambda_alarms) == 10  # errors and throttles of each of the five functions
    topics = [n for n, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]
    assert topics == ["AlarmTopic"] and all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
    assert resources["Table"]["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at",
                                                                         "Enabled": True}
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    assert sorted(p["Bucket"]["Ref"] for p in policies) == ["RepositoryBucket", "StagingBucket"]
    for policy in policies:
        deny = policy["PolicyDocument"]["Statement"][0]  # the staging bucket's may add the GuardDuty tag rule
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert resources["StagingBucket"]["DeletionPolicy"] == "Delete"
    assert resources["RepositoryBucket"]["DeletionPolicy"] == resources["Table"]["DeletionPolicy"] == "Retain"
