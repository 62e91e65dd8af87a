"""Adapters on moto: S3 storage (range reads with and without the container cache), the IoT signer."""

from __future__ import annotations

import hashlib

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.certificates import IotRegistry, IotSigner
from chalicelib.adapters.s3 import S3Storage

from .fakes import make_csr


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")


@pytest.mark.parametrize("cache_limit", [0, 1 << 20])
@pytest.mark.parametrize(("start", "length"), [(0, 100), (4000, 96), (4090, 100), (0, 4096)])
def test_read_range_with_and_without_cache(aws, cache_limit, start, length):
    s3 = aws.client("s3")
    for bucket in ("stg-b", "repo-b"):
        s3.create_bucket(Bucket=bucket)
    data = bytes(range(256)) * 16
    s3.put_object(Bucket="stg-b", Key="uploads/up-1", Body=data)
    storage = S3Storage(s3, "stg-b", "repo-b", cache_limit=cache_limit)
    staged = storage.read_staging("up-1", len(data))
    assert staged is not None and bytes(staged.data) == data and storage.read_staging("up-2", 10) is None
    storage.publish("packages/a/1.0.0/x.otapkg", data, hashlib.sha256(data).hexdigest())
    assert storage.read_range("packages/a/1.0.0/x.otapkg", start, length) == data[start : start + length]
    assert "packages/a/1.0.0/x.otapkg" in storage.download_url("packages/a/1.0.0/x.otapkg", 60)


def test_iot_signer_and_registry(aws):
    iot = aws.client("iot")
    issued = IotSigner(iot, "CA PEM").sign("dev-1", make_csr("dev-1"))
    assert issued.certificate_id and issued.certificate_arn and "BEGIN CERTIFICATE" in issued.certificate_pem
    registry = IotRegistry(iot, "ota-device")
    registry.register("dev-1", "model-a", issued)
    assert iot.list_thing_principals(thingName="dev-1")["principals"] == [issued.certificate_arn]
    assert iot.list_attached_policies(target=issued.certificate_arn)["policies"][0]["policyName"] == "ota-device"
    registry.deregister("dev-1", issued.certificate_id, issued.certificate_arn)
    description = iot.describe_certificate(certificateId=issued.certificate_id)["certificateDescription"]
    assert description["status"] == "REVOKED"
    assert iot.list_thing_principals(thingName="dev-1")["principals"] == []
