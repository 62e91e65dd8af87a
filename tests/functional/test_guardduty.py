"""OTA_MALWARE_ENGINE=guardduty on moto: GuardDuty Malware Protection for S3 is played by tagging the
staging object `GuardDutyMalwareScanStatus` as GuardDuty would (moto keeps S3 object tags). The staging
handler waits for the tag (the message is reported in batchItemFailures and comes back), decides on it,
and fails closed on its last attempt; both ways in (upload slot, `incoming/`) go through it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.adapters.malware import STATUS_TAG, GuardDutyScanner
from chalicelib.domain.ports import ScanPending, StagedObject
from chalicelib.settings import Settings, SettingsError
from chalicelib.triggers.staging import SCAN_ATTEMPTS, on_staging_object

from .fakes import make_package, sqs_record
from .flows import trust

PIPELINE = "AWS:AIDAEXAMPLEUSERID"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "OTA_MALWARE_ENGINE": "guardduty"}


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def notification(key: str, etag: str | None = None, receive_count: int = 1,
                 name: str = "ObjectCreated:Put") -> dict[str, Any]:
    record: dict[str, Any] = {"eventName": name, "userIdentity": {"principalId": PIPELINE},
                              "s3": {"object": {"key": key, **({"eTag": etag} if etag else {})}}}
    message = sqs_record(json.dumps({"Records": [record]}))
    message["attributes"] = {"ApproximateReceiveCount": str(receive_count)}
    return {"Records": [message]}


def tag(world: Any, key: str, status: str) -> None:
    """What GuardDuty's role does once it has scanned the object."""
    world.session.client("s3").put_object_tagging(Bucket=world.settings.staging_bucket, Key=key,
                                                  Tagging={"TagSet": [{"Key": STATUS_TAG, "Value": status}]})


def slot_with(api: Any, world: Any, data: bytes) -> str:
    upload_id = api.call("POST", "/packages", {"size": len(data)}).json["upload_id"]
    world.session.client("s3").put_object(Bucket=world.settings.staging_bucket, Key=f"uploads/{upload_id}",
                                          Body=data)
    return str(upload_id)


def test_the_setting_chooses_the_engine_and_rejects_unknown_ones(world, env):
    assert isinstance(world.container.scanner, GuardDutyScanner)
    assert Settings.from_env({k: v for k, v in env.items() if k != "OTA_MALWARE_ENGINE"}).malware_engine == "builtin"
    with pytest.raises(SettingsError, match="OTA_MALWARE_ENGINE='clamscan' must be one of builtin, guardduty"):
        Settings.from_env({**env, "OTA_MALWARE_ENGINE": "clamscan"})


def test_an_upload_waits_for_the_tag_then_is_decided_on_it(api, world, key):
    trust(api, key)
    upload_id = slot_with(api, world, make_package(key))
    event = notification(f"uploads/{upload_id}")
    answer = on_staging_object(event, None)
    assert answer == {"scanned": [], "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert api.call("GET", f"/packages/{upload_id}").json["state"] == "PENDING"
    tag(world, f"uploads/{upload_id}", "NO_THREATS_FOUND")
    again = on_staging_object(notification(f"uploads/{upload_id}", receive_count=2), None)
    assert again == {"scanned": [{"upload_id": upload_id, "state": "AVAILABLE"}], "batchItemFailures": []}
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert shown["scanner"] == GuardDutyScanner.name and shown["source"] == "api"


@pytest.mark.parametrize("status", ["THREATS_FOUND", "UNSUPPORTED", "ACCESS_DENIED", "FAILED", "SOMETHING_NEW"])
def test_every_status_but_no_threats_found_rejects(api, world, key, status):
    trust(api, key)
    upload_id = slot_with(api, world, make_package(key))
    tag(world, f"uploads/{upload_id}", status)
    on_staging_object(notification(f"uploads/{upload_id}"), None)
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert shown["state"] == "REJECTED" and shown["reasons"][0].startswith("malware scan: ")
    assert status in shown["reasons"][0]


def test_no_verdict_by_the_last_attempt_fails_closed(api, world, key):
    trust(api, key)
    upload_id = slot_with(api, world, make_package(key))
    answer = on_staging_object(notification(f"uploads/{upload_id}", receive_count=SCAN_ATTEMPTS), None)
    assert answer["batchItemFailures"] == []
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert shown["state"] == "REJECTED" and shown["reasons"][0].startswith("malware scan: no verdict")


def test_a_structurally_bad_upload_is_rejected_without_waiting(api, world):
    upload_id = slot_with(api, world, b"not a package")
    answer = on_staging_object(notification(f"uploads/{upload_id}"), None)
    assert answer["scanned"][0]["state"] == "REJECTED" and answer["batchItemFailures"] == []


def test_an_incoming_upload_waits_for_its_tag_too(api, world, key):
    trust(api, key)
    s3 = world.session.client("s3")
    etag = s3.put_object(Bucket=world.settings.staging_bucket, Key="incoming/app.otapkg",
                         Body=make_package(key))["ETag"].strip('"')
    assert on_staging_object(notification("incoming/app.otapkg", etag), None)["batchItemFailures"]
    assert api.call("GET", "/packages").json["packages"] == []
    tag(world, "incoming/app.otapkg", "NO_THREATS_FOUND")
    decided = on_staging_object(notification("incoming/app.otapkg", etag, receive_count=2), None)["scanned"]
    shown = api.call("GET", f"/packages/{decided[0]['upload_id']}").json
    assert shown["state"] == "AVAILABLE" and shown["uploaded_by"] == PIPELINE and shown["source"] == "s3"


def test_a_tag_read_is_only_believed_for_the_object_that_was_judged(world):
    s3, bucket = world.session.client("s3"), world.settings.staging_bucket
    scanner = GuardDutyScanner(s3, bucket)
    judged = s3.put_object(Bucket=bucket, Key="incoming/x", Body=b"judged bytes")["ETag"]
    s3.put_object(Bucket=bucket, Key="incoming/x", Body=b"other bytes")  # replaced after the read
    tag(world, "incoming/x", "NO_THREATS_FOUND")  # the new object's verdict
    obj = StagedObject(etag=judged, size=12, data=b"judged bytes", key="incoming/x")
    with pytest.raises(ScanPending, match="replaced"):
        scanner.scan(b"judged bytes", None, None, obj)
    s3.delete_object(Bucket=bucket, Key="incoming/x")
    with pytest.raises(ScanPending, match="gone"):
        scanner.scan(b"judged bytes", None, None, obj)
    with pytest.raises(ValueError):
        scanner.scan(b"judged bytes", None, None, None)


def test_guardduty_tagging_the_object_wakes_the_waiting_slot_but_not_an_incoming_upload(api, world, key):
    trust(api, key)
    upload_id = slot_with(api, world, make_package(key))
    assert on_staging_object(notification(f"uploads/{upload_id}"), None)["batchItemFailures"]  # waits
    tag(world, f"uploads/{upload_id}", "NO_THREATS_FOUND")
    woken = on_staging_object(notification(f"uploads/{upload_id}", name="ObjectTagging:Put"), None)
    assert woken["scanned"] == [{"upload_id": upload_id, "state": "AVAILABLE"}]
    s3 = world.session.client("s3")
    s3.put_object(Bucket=world.settings.staging_bucket, Key="incoming/b.otapkg",
                  Body=make_package(key, version="2.0.0"))
    tag(world, "incoming/b.otapkg", "NO_THREATS_FOUND")
    assert on_staging_object(notification("incoming/b.otapkg", name="ObjectTagging:Put"), None)["scanned"] == []


def test_s3_refusing_the_tag_read_is_retried_then_fails_closed_with_the_cause(world):
    class Refusing:
        """A staging function whose role lacks s3:GetObjectTagging."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def head_object(self, **kwargs: Any) -> Any:
            return self.inner.head_object(**kwargs)

        def get_object_tagging(self, **kwargs: Any) -> Any:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "GetObjectTagging")

    s3, bucket = world.session.client("s3"), world.settings.staging_bucket
    etag = s3.put_object(Bucket=bucket, Key="uploads/up-x", Body=b"bytes")["ETag"]
    obj = StagedObject(etag=etag, size=5, data=b"bytes", key="uploads/up-x")
    with pytest.raises(ScanPending, match="AccessDenied"):
        GuardDutyScanner(Refusing(s3), bucket).scan(b"bytes", None, None, obj)
