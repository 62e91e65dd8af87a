"""The DynamoDB item of a REJECTED package carries the TTL attribute the table expires (infra/template.yaml:
TimeToLiveSpecification on `expires_at`), 90 days after the upload like its quarantined object; no other
item carries it, and a record that leaves REJECTED loses it. The in-memory repository has no TTL: the
entity read back is the same on both (the repository contract)."""

from __future__ import annotations

from dataclasses import replace

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.dynamo import REJECTED_TTL_SECONDS, DynamoRepository
from chalicelib.adapters.provision import ensure_table
from chalicelib.domain.models import Package

from ..functional.test_infra import _merge_template


@pytest.fixture
def dynamo():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        ensure_table(client, "ttl")
        yield client, DynamoRepository(client, "ttl")


def raw(client, upload_id: str) -> dict:
    return client.get_item(TableName="ttl", Key={"pk": {"S": f"PKG#{upload_id}"}, "sk": {"S": "PKG"}})["Item"]


def test_a_rejected_package_expires_90_days_after_its_upload(dynamo):
    client, repo = dynamo
    pending = Package(upload_id="up-1", state="PENDING", declared_size=10, created_at=1_796_000_000.5)
    repo.create_package(pending)
    assert "expires_at" not in raw(client, "up-1")
    rejected = replace(pending, state="REJECTED", reasons=("bad-signature",), version=pending.version + 1)
    repo.save_package(rejected)
    assert raw(client, "up-1")["expires_at"] == {"N": str(1_796_000_000 + 90 * 86400)}
    assert REJECTED_TTL_SECONDS == 90 * 86400
    assert repo.get_package("up-1") == rejected  # the attribute is not part of the entity


def test_available_packages_never_expire(dynamo):
    client, repo = dynamo
    package = Package(upload_id="up-2", state="AVAILABLE", declared_size=10, created_at=5.0)
    repo.create_package(package)
    assert "expires_at" not in raw(client, "up-2")


def test_the_template_expires_the_attribute_the_adapter_writes():
    spec = _merge_template()["Resources"]["Table"]["Properties"]["TimeToLiveSpecification"]
    assert spec == {"AttributeName": "expires_at", "Enabled": True}
