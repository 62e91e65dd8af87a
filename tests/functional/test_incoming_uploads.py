"""`incoming/` uploads through the staging handler on moto: the recorded S3 notification of a pipeline's
multipart `aws s3 cp` (infra/events/sqs-s3-incoming.json: userIdentity, URL-encoded key, multipart
eTag), moto's own notifications for `incoming/` (adapters/provision.py subscribes both prefixes), and
the package view and listing that show who uploaded what."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.staging import on_staging_object, staged_keys

from .fakes import make_package
from .flows import drain_staging, trust

EVENT = Path(__file__).resolve().parents[2] / "infra" / "events" / "sqs-s3-incoming.json"


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def recorded(bucket: str, key: str, etag: str) -> dict[str, Any]:
    """The recorded notification, naming this bucket, key (URL-encoded as S3 sends it) and eTag."""
    event = copy.deepcopy(json.loads(EVENT.read_text()))
    body = json.loads(event["Records"][0]["body"])
    s3 = body["Records"][0]["s3"]
    s3["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    s3["object"].update(key=quote_plus(key), eTag=etag)
    event["Records"][0]["body"] = json.dumps(body)
    return event


def multipart_put(s3: Any, bucket: str, key: str, data: bytes) -> str:
    """`aws s3 cp` of a large file: a multipart upload (ETag `<md5 of md5s>-<parts>`)."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    half = 5 * 1024 * 1024  # S3's smallest part but the last
    parts = []
    for number, chunk in enumerate((data[:half], data[half:]), start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk)["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    return str(done["ETag"]).strip('"')


def test_the_recorded_pipeline_upload_becomes_a_package_with_its_uploader(api, world, key):
    trust(api, key)
    bucket, name = world.settings.staging_bucket, "incoming/release 7/demo-1.2.0.otapkg"
    data = make_package(key, version="1.2.0", size=6 * 1024 * 1024)
    etag = multipart_put(world.session.client("s3"), bucket, name, data)
    assert etag.endswith("-2")
    answer = on_staging_object(recorded(bucket, name, etag), None)
    [scanned] = answer["scanned"]
    shown = api.call("GET", f"/packages/{scanned['upload_id']}").json
    assert shown["state"] == "AVAILABLE" and shown["manifest"]["version"] == "1.2.0"
    assert shown["staging_key"] == name and shown["source"] == "s3"
    assert shown["uploaded_by"] == "AWS:AIDAEXAMPLEUSERID0001"


def test_moto_notifies_incoming_uploads_and_the_listing_shows_them(api, world, key):
    trust(api, key)
    s3 = world.session.client("s3")
    s3.put_object(Bucket=world.settings.staging_bucket, Key="incoming/demo.otapkg", Body=make_package(key))
    s3.put_object(Bucket=world.settings.staging_bucket, Key="incoming/junk.bin", Body=b"junk")
    s3.put_object(Bucket=world.settings.staging_bucket, Key="incoming/folder/", Body=b"")
    drain_staging(world)
    listed = {p["staging_key"]: p for p in api.call("GET", "/packages").json["packages"]}
    assert sorted(listed) == ["incoming/demo.otapkg", "incoming/junk.bin"]
    assert listed["incoming/demo.otapkg"]["state"] == "AVAILABLE"
    assert listed["incoming/junk.bin"]["state"] == "REJECTED" and listed["incoming/junk.bin"]["reasons"]
    assert all(p["source"] == "s3" for p in listed.values())


def test_the_uploader_named_by_the_event_is_recorded(api, world, key):
    trust(api, key)
    s3, bucket = world.session.client("s3"), world.settings.staging_bucket
    etag = s3.put_object(Bucket=bucket, Key="incoming/a.otapkg", Body=make_package(key))["ETag"].strip('"')
    [scanned] = on_staging_object(recorded(bucket, "incoming/a.otapkg", etag), None)["scanned"]
    assert api.call("GET", f"/packages/{scanned['upload_id']}").json["uploaded_by"] == "AWS:AIDAEXAMPLEUSERID0001"


def test_the_recorded_event_parses_to_its_key_etag_and_principal():
    [staged] = staged_keys(json.loads(EVENT.read_text())["Records"][0]["body"])
    assert staged.key == "incoming/demo-1.2.0.otapkg" and staged.upload_id is None
    assert staged.etag == "5d41402abc4b2a76b9719d911017c592-2" and staged.principal == "AWS:AIDAEXAMPLEUSERID0001"
