"""Uploads made straight into the staging bucket under `incoming/` (services/incoming.py), on the
in-memory adapters and on DynamoDB + S3 (moto): judged like a slot's upload, recorded with who uploaded
them, the same bytes are one package, a REJECTED decision is never turned AVAILABLE under its id, a
replaced object is a new upload, a stale notification decides nothing, an oversized object is refused
without being read."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.domain.models import PublisherKey
from chalicelib.services.incoming import bytes_id, scan_incoming
from chalicelib.services.packages import create_upload, package_view
from chalicelib.services.scan import BuiltinScanner, scan_upload
from otaformat import signing

from ..functional.fakes import NOW, make_package, public_pem
from .conftest import STAGING

MAX = 1 << 20
PIPELINE = "AWS:AROAEXAMPLEROLEID:release-pipeline"


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def trust(repo: Any, key: ec.EllipticCurvePrivateKey) -> None:
    repo.put_key(PublisherKey(key_id=signing.key_id(key.public_key()), name="k", public_key_pem=public_pem(key),
                              created_at=NOW))


def put(stores: Any, key: str, data: bytes) -> str:
    """`aws s3 cp` into the staging bucket; returns the ETag S3 gives (what the notification carries)."""
    if stores.s3 is None:
        return str(stores.storage.put_incoming(key, data)).strip('"')
    return str(stores.s3.put_object(Bucket=STAGING, Key=key, Body=data)["ETag"]).strip('"')


def scan(stores: Any, key: str, etag: str | None = None, principal: str | None = PIPELINE, limit: int = MAX) -> Any:
    return scan_incoming(stores.repo, stores.storage, BuiltinScanner(), NOW + 10, key, limit, etag, principal)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_incoming_package_is_scanned_and_recorded_with_its_uploader(stores, key):
    trust(stores.repo, key)
    good = make_package(key, version="1.2.0")
    etag = put(stores, "incoming/demo-1.2.0.otapkg", good)
    package = scan(stores, "incoming/demo-1.2.0.otapkg", etag)
    assert package.state == "AVAILABLE" and package.upload_id == bytes_id(sha(good))
    assert (package.source, package.uploaded_by, package.staging_key) == ("s3", PIPELINE, "incoming/demo-1.2.0.otapkg")
    assert stores.stored(package.repository_key) == good and package.sha256 == sha(good)
    view = package_view(stores.repo.get_package(package.upload_id))
    assert view["source"] == "s3" and view["uploaded_by"] == PIPELINE and view["state"] == "AVAILABLE"
    assert view["scanner"].startswith("builtin-eicar (local default, not a malware engine")


def test_the_same_bytes_uploaded_twice_are_one_package(stores, key):
    trust(stores.repo, key)
    good = make_package(key)
    first = scan(stores, "incoming/a.otapkg", put(stores, "incoming/a.otapkg", good))
    assert scan(stores, "incoming/a.otapkg") == first  # the notification delivered again
    again = scan(stores, "incoming/b.otapkg", put(stores, "incoming/b.otapkg", good), principal="AWS:other")
    assert again == first and again.uploaded_by == PIPELINE
    assert [p.upload_id for p in stores.repo.list_packages()] == [first.upload_id]


@pytest.mark.parametrize("first_way", ["api", "s3"])
def test_api_and_s3_uploads_of_the_same_bytes_are_one_package(stores, key, first_way):
    trust(stores.repo, key)
    good = make_package(key)
    if first_way == "api":
        slot = create_upload(stores.repo, stores.storage, NOW, {"size": len(good)}, MAX)[0]["upload_id"]
        stores.put(slot, good)
        existing = scan_upload(stores.repo, stores.storage, BuiltinScanner(), NOW, slot, MAX)
        assert scan(stores, "incoming/x.otapkg", put(stores, "incoming/x.otapkg", good)) == existing
    else:
        existing = scan(stores, "incoming/x.otapkg", put(stores, "incoming/x.otapkg", good))
        answer, opened = create_upload(stores.repo, stores.storage, NOW, {"size": len(good), "sha256": sha(good)}, MAX)
        assert not opened and answer["upload_id"] == existing.upload_id
    assert len(stores.repo.list_packages()) == 1 and existing.state == "AVAILABLE"


def test_rejected_bytes_stay_rejected_and_a_new_upload_of_them_is_judged_again(stores, key):
    good = make_package(key)
    rejected = scan(stores, "incoming/app.otapkg", put(stores, "incoming/app.otapkg", good))
    assert rejected.state == "REJECTED" and rejected.reasons[0].startswith("untrusted-key")
    assert scan(stores, "incoming/app.otapkg") == rejected  # the same object version: nothing new
    trust(stores.repo, key)  # the operator registers the key, the pipeline uploads again
    accepted = scan(stores, "incoming/app-retry.otapkg", put(stores, "incoming/app-retry.otapkg", good))
    assert accepted.state == "AVAILABLE" and accepted.upload_id.startswith(rejected.upload_id + ".")
    assert stores.repo.get_package(rejected.upload_id) == rejected  # never turned AVAILABLE under its id
    assert scan(stores, "incoming/app-3.otapkg", put(stores, "incoming/app-3.otapkg", good)) == accepted


def test_a_replaced_incoming_object_is_a_new_upload_and_stale_notifications_decide_nothing(stores, key):
    trust(stores.repo, key)
    first, second = make_package(key, version="1.0.0"), make_package(key, version="1.0.1")
    old_etag = put(stores, "incoming/app.otapkg", first)
    decided = scan(stores, "incoming/app.otapkg", old_etag)
    new_etag = put(stores, "incoming/app.otapkg", second)
    assert scan(stores, "incoming/app.otapkg", old_etag) is None  # the first PUT's notification, late
    replaced = scan(stores, "incoming/app.otapkg", new_etag)
    assert replaced.upload_id != decided.upload_id and replaced.state == "AVAILABLE" and replaced.sha256 == sha(second)
    assert stores.repo.get_package(decided.upload_id) == decided
    assert stores.stored(decided.repository_key) == first and stores.stored(replaced.repository_key) == second


def test_an_oversized_incoming_object_is_rejected_without_being_read(stores, key):
    trust(stores.repo, key)
    good = make_package(key, size=6000)
    etag = put(stores, "incoming/big.otapkg", good)
    package = scan(stores, "incoming/big.otapkg", etag, limit=len(good) - 1)
    assert package.state == "REJECTED" and package.sha256 is None and package.reasons[0].startswith("size:")
    assert package.upload_id.startswith("s3-") and package.size == len(good)
    assert scan(stores, "incoming/big.otapkg", etag, limit=len(good) - 1) == package


@pytest.mark.parametrize("key_name", ["incoming/", "incoming/folder/", "uploads/up-1", "elsewhere/x"])
def test_keys_that_are_not_incoming_uploads_are_ignored(stores, key_name):
    assert scan(stores, key_name) is None and stores.repo.list_packages() == []


def test_an_object_gone_before_its_scan_decides_nothing(stores):
    assert scan(stores, "incoming/never-written.otapkg") is None and stores.repo.list_packages() == []
