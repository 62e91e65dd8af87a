"""Keys, upload slots, the staging scan (trigger), listing, retiring, and the golden fixtures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.staging import on_staging_object
from otaformat import signing

from .fakes import make_package, public_pem, sqs_record
from .flows import drain_staging, publish, trust, upload
from .staging_swap import SwapStaging

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEVICE_SIDE_CODES = {"wrong-model"}  # model policy is checked per job and on the device, not at scan


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


def test_key_registration_uses_otaformat_key_id_and_is_idempotent(api, key):
    first = api.call("POST", "/keys", {"public_key": public_pem(key), "name": "release"})
    again = api.call("POST", "/keys", {"public_key": public_pem(key), "name": "release"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json["key_id"] == signing.key_id(key.public_key()) == again.json["key_id"]
    assert [k["key_id"] for k in api.call("GET", "/keys").json["keys"]] == [first.json["key_id"]]
    assert api.call("DELETE", f"/keys/{first.json['key_id']}").status_code == 200
    assert api.call("DELETE", f"/keys/{first.json['key_id']}").status_code == 404


@pytest.mark.parametrize("body", [{"public_key": "nope", "name": "x"}, {"name": "x"}, {"public_key": 3, "name": "x"}])
def test_bad_keys_are_400(api, body):
    answer = api.call("POST", "/keys", body)
    assert answer.status_code == 400 and "public_key" in answer.json["message"]


def test_upload_slot_is_a_presigned_put_into_staging(api, world):
    answer = api.call("POST", "/packages", {"size": 1000})
    assert answer.status_code == 201
    assert answer.json["method"] == "PUT"
    assert f"uploads/{answer.json['upload_id']}" in answer.json["url"]
    assert world.settings.staging_bucket in answer.json["url"]
    assert api.call("GET", f"/packages/{answer.json['upload_id']}").json["state"] == "PENDING"


@pytest.mark.parametrize("size", [0, -1, "10", 1.5, True, 32 * 1024 * 1024 + 1, None])
def test_upload_size_is_bounded(api, size):
    answer = api.call("POST", "/packages", {"size": size})
    assert answer.status_code == 400 and "size" in answer.json["message"]


def test_clean_package_is_promoted_to_an_immutable_key(api, world, key):
    upload_id = publish(api, world, key, app="demo", version="1.2.3")
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert shown["repository_key"] == f"packages/demo/1.2.3/{shown['sha256']}.otapkg"
    assert shown["manifest"]["app"] == "demo" and shown["manifest"]["models"] == ["model-a"]
    assert "EICAR" in shown["scanner"]
    head = world.session.client("s3").head_object(Bucket=world.settings.repository_bucket, Key=shown["repository_key"])
    assert head["ContentLength"] == shown["size"]


def test_untrusted_package_is_rejected_and_stays_in_staging(api, world, key):
    upload_id = upload(api, world, make_package(key))
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert shown["state"] == "REJECTED"
    assert shown["reasons"][0].startswith("untrusted-key")
    s3 = world.session.client("s3")
    assert s3.head_object(Bucket=world.settings.staging_bucket, Key=f"uploads/{upload_id}")
    assert s3.list_objects_v2(Bucket=world.settings.repository_bucket).get("KeyCount", 0) == 0


def test_oversized_upload_is_rejected(api, world, key):
    trust(api, key)
    data = make_package(key)
    slot = api.call("POST", "/packages", {"size": len(data) - 1}).json
    world.session.client("s3").put_object(Bucket=world.settings.staging_bucket, Key=f"uploads/{slot['upload_id']}",
                                          Body=data)
    drain_staging(world)
    shown = api.call("GET", f"/packages/{slot['upload_id']}").json
    assert shown["state"] == "REJECTED" and shown["reasons"][0].startswith("size")


def test_malware_scan_port_rejects_eicar(api, world, key):
    trust(api, key)
    eicar = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    upload_id = upload(api, world, make_package(key, content=b"head" + eicar + b"tail"))
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert shown["state"] == "REJECTED" and "EICAR" in shown["reasons"][0]


def test_scanning_twice_changes_nothing(api, world, key):
    upload_id = publish(api, world, key)
    before = api.call("GET", f"/packages/{upload_id}").json
    notification = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": f"uploads/{upload_id}"}}}]}
    on_staging_object({"Records": [sqs_record(json.dumps(notification))]}, None)
    assert api.call("GET", f"/packages/{upload_id}").json == before
    assert world.container.repository.get_package(upload_id).version == 2


@pytest.mark.parametrize("body", ["not json", json.dumps({"Event": "s3:TestEvent"}), json.dumps({"Records": [{}]}),
                                  json.dumps({"Records": [{"eventName": "ObjectCreated:Put",
                                                           "s3": {"object": {"key": "elsewhere/x"}}}]})])
def test_staging_handler_drops_foreign_messages(world, body):
    assert on_staging_object({"Records": [sqs_record(body)]}, None) == {"scanned": [], "batchItemFailures": []}


def test_list_filters_and_retire(api, world, key):
    first = publish(api, world, key, app="demo", version="1.0.0")
    world.clock.advance(1)  # listings are ordered by creation time
    second = publish(api, world, key, app="other", version="2.0.0", models=("model-b",))
    def ids(query):
        return [p["upload_id"] for p in api.call("GET", f"/packages{query}").json["packages"]]
    assert ids("") == [first, second]
    assert ids("?app=other") == [second]
    assert ids("?model=model-a") == [first]
    assert ids("?version=1.0.0&state=AVAILABLE") == [first]
    assert api.call("GET", "/packages?state=BOGUS").status_code == 400
    assert api.call("POST", f"/packages/{first}/retire").json["state"] == "RETIRED"
    assert ids("?state=RETIRED") == [first]
    assert api.call("GET", "/packages/up-missing").status_code == 404


def _fixture_cases():
    expected = FIXTURES / "expected.json"
    if not expected.exists():
        return []
    return sorted(json.loads(expected.read_text()).items())


@pytest.mark.skipif(not (FIXTURES / "expected.json").exists(), reason="tests/fixtures/ not generated yet")
@pytest.mark.parametrize(("name", "expect"), _fixture_cases())
def test_golden_fixtures_scan_as_expected(api, world, name, expect):
    pub = (FIXTURES / "publisher.pub").read_text()
    assert api.call("POST", "/keys", {"public_key": pub, "name": "fixtures"}).status_code == 201
    upload_id = upload(api, world, (FIXTURES / name).read_bytes())
    shown = api.call("GET", f"/packages/{upload_id}").json
    if expect["verdict"] == "accept" or expect["code"] in DEVICE_SIDE_CODES:
        assert shown["state"] == "AVAILABLE", shown["reasons"]
    else:
        assert shown["state"] == "REJECTED"
        assert shown["reasons"][0].split(":")[0] == expect["code"], shown["reasons"]


def test_manifest_too_big_for_a_job_document_is_rejected(api, world, key):
    from otaformat.build import BuildSpec, SourceFile, build_full

    trust(api, key)
    spec = BuildSpec(app="demo", version="1.0.0", models=("model-a",), created="2026-11-01T00:00:00Z",
                     expires="2030-01-01T00:00:00Z", compression="none")
    files = [SourceFile(f"data/file-{n:05d}.bin", n.to_bytes(4, "big")) for n in range(1200)]
    upload_id = upload(api, world, build_full(spec, files, key))
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert shown["state"] == "REJECTED" and "job document" in shown["reasons"][0]


def test_staging_object_swapped_after_the_scan_read_it_is_judged_as_a_new_upload(api, world, key):
    """Threat 37 end to end on moto: the upload URL is used again after the scan has read the object.
    The slot's package holds the judged bytes; the swap's own S3 notification gets the new object
    judged as a new upload (REJECTED, listed with `replaces`), the slot and its repository object untouched."""
    trust(api, key)
    good, evil = make_package(key, version="1.2.3"), make_package(ec.generate_private_key(ec.SECP256R1()))
    s3, staging = world.session.client("s3"), world.settings.staging_bucket
    slot = api.call("POST", "/packages", {"size": max(len(good), len(evil))}).json
    upload_id = slot["upload_id"]

    def put(uid: str, data: bytes) -> None:
        s3.put_object(Bucket=staging, Key=f"uploads/{uid}", Body=data)

    swapping = SwapStaging(world.container.storage, put, upload_id, evil)
    world.container.storage = swapping
    put(upload_id, good)
    drain_staging(world)  # the first notification (swap happens inside), then the swap's notification
    assert swapping.swapped
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert shown["state"] == "AVAILABLE" and shown["sha256"] == hashlib.sha256(good).hexdigest()
    held = s3.get_object(Bucket=world.settings.repository_bucket, Key=shown["repository_key"])["Body"].read()
    assert held == good and hashlib.sha256(held).hexdigest() == shown["sha256"]
    replaced = [p for p in api.call("GET", "/packages").json["packages"] if p["replaces"] == upload_id]
    assert len(replaced) == 1 and replaced[0]["state"] == "REJECTED"
    assert replaced[0]["reasons"][0].startswith("untrusted-key")
    assert replaced[0]["sha256"] == hashlib.sha256(evil).hexdigest()
    assert api.call("GET", f"/packages/{replaced[0]['upload_id']}").json == replaced[0]
    keys = s3.list_objects_v2(Bucket=world.settings.repository_bucket)["Contents"]
    assert [k["Key"] for k in keys] == [shown["repository_key"]]
    # a job may reference the slot's package: nothing about it changed
    assert api.call("GET", f"/packages/{upload_id}").json == shown


def _slot(api, data: bytes, sha256: str | None = None):
    body = {"size": len(data)} if sha256 is None else {"size": len(data), "sha256": sha256}
    return api.call("POST", "/packages", body)


def test_an_upload_of_bytes_already_available_returns_the_existing_package(api, world, key):
    data = make_package(key)
    trust(api, key)
    first = upload(api, world, data)
    again = _slot(api, data, hashlib.sha256(data).hexdigest())
    assert again.status_code == 200 and again.json["upload_id"] == first
    assert again.json["existing"]["state"] == "AVAILABLE" and "url" not in again.json
    listed = api.call("GET", "/packages").json["packages"]
    assert [p["upload_id"] for p in listed if p["state"] == "AVAILABLE"] == [first]  # one row for one package


@pytest.mark.parametrize("known", [False, True])
def test_other_bytes_get_a_slot_that_accepts_only_the_declared_bytes(api, world, key, known):
    trust(api, key)
    data, other = make_package(key), make_package(key, version="2.0.0")
    if known:
        upload(api, world, data)
    slot = _slot(api, other, hashlib.sha256(data + b"x").hexdigest())  # declared bytes that are not these
    assert slot.status_code == 201 and slot.json["url"]
    world.session.client("s3").put_object(Bucket=world.settings.staging_bucket,
                                          Key=f"uploads/{slot.json['upload_id']}", Body=other)
    drain_staging(world)
    shown = api.call("GET", f"/packages/{slot.json['upload_id']}").json
    assert shown["state"] == "REJECTED" and shown["reasons"][0].startswith("sha256: the upload's SHA-256 is")


def test_a_malformed_declared_sha256_is_400(api):
    answer = api.call("POST", "/packages", {"size": 10, "sha256": "XYZ"})
    assert answer.status_code == 400 and answer.json["field"] == "sha256"
