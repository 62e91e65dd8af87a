"""`make package` end to end (infra/package.py): the real `chalice package` (PyPI needed for the first
build, then cached in .chalice/deployments/), the bundle imported alone, the five handlers against
recorded AWS events on a moto server, cfn-lint on the packaged template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra import package, stage

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("out")
    return out, package.run(ROOT, out)


def test_every_handler_answers_its_recorded_event_from_the_bundle_alone(packaged):
    _, summary = packaged
    assert set(summary["handlers"]) == {"api", "authorizer", "staging", "device", "fanout", "sweep"}
    checks = {c["check"]: c for c in summary["checks"]}
    assert all(c["ok"] for c in checks.values())
    for needed in ("boto3 and the app come from the bundle", "authorizer allows the operator token",
                   "authorizer denies another token", "staging handler scans the upload: AVAILABLE",
                   "staging handler takes an incoming/ upload: the same bytes are the same package",
                   "registration answers a certificate and the bundled Amazon root CA",
                   "device-message handler applies the inventory", "API shows the reported apps",
                   "sweep answers the scheduled event", "X-Ray: the SQS middleware's subsegment"):
        assert needed in checks, needed
    assert summary["lint"] == []


def test_the_packaged_template_subscribes_the_template_queues_with_partial_batch_responses(packaged):
    out, _ = packaged
    template = package.load_template(out / "sam.yaml")
    resources = template["Resources"]
    for function, queue, concurrency in (("OnStagingObject", "StagingQueue", 2), ("OnDeviceMessage", "DeviceQueue", 5),
                                         ("OnFanout", "FanoutQueue", 5)):
        [mapping] = resources[function]["Properties"]["Events"].values()
        properties = mapping["Properties"]
        assert properties["Queue"] == {"Fn::Sub": f"${{{queue}.Arn}}"}, function  # not the name seen at packaging
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert properties["ScalingConfig"] == {"MaximumConcurrency": concurrency}
    assert resources["Sweep"]["Properties"]["ReservedConcurrentExecutions"] == 1
    functions = [r for r in resources.values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) == 6 and all(f["Properties"]["Tracing"] == "Active" for f in functions)
    assert all(f["Properties"]["Environment"]["Variables"]["OTA_MQTT_CA"] == stage.CA_FILE for f in functions)


def test_the_bundle_carries_otaformat_bsdiff4_and_the_amazon_root_ca(packaged):
    import zipfile

    out, _ = packaged
    names = set(zipfile.ZipFile(out / "deployment.zip").namelist())
    assert {"app.py", "otaformat/delta.py", stage.CA_FILE} <= names
    assert any(n.startswith("bsdiff4/") for n in names) and any(n.startswith("boto3/") for n in names)


def test_the_root_ca_comes_from_certifi_by_subject():
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(package.amazon_root_ca().encode())
    assert cert.subject.rfc4514_string() == "CN=Amazon Root CA 1,O=Amazon,C=US"
