"""Threat 37: the staging object is replaced through its still-valid presigned PUT URL after the scan
has read it. On the in-memory adapters and on DynamoDB + S3 (moto): the repository holds exactly the
judged bytes, the recorded SHA-256 is the repository object's, the slot's decision never changes, and
the replacement is judged from scratch as its own upload (REJECTED if bad, AVAILABLE on its own if good).

The swap is injected with a storage wrapper (the attacker's PUT landing at the worst moment), not by
patching any module."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.domain.models import PublisherKey
from chalicelib.services.packages import create_upload
from chalicelib.services.scan import BuiltinScanner, replacement_id, scan_upload
from otaformat import signing

from ..functional.fakes import NOW, make_package, public_pem
from ..functional.staging_swap import SwapStaging

MAX = 1 << 20


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def trust(repo: Any, key: ec.EllipticCurvePrivateKey) -> None:
    repo.put_key(PublisherKey(key_id=signing.key_id(key.public_key()), name="k", public_key_pem=public_pem(key),
                              created_at=NOW))


def slot(stores: Any, size: int = MAX) -> str:
    return create_upload(stores.repo, stores.storage, NOW, {"size": size}, MAX)[0]["upload_id"]


def scan(stores: Any, storage: Any, upload_id: str) -> Any:
    return scan_upload(stores.repo, storage, BuiltinScanner(), NOW + 10, upload_id, MAX)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_repository_matches_records(stores: Any) -> None:
    """Every AVAILABLE record's repository object hashes to the SHA-256 the record carries."""
    for package in stores.repo.list_packages():
        if package.state == "AVAILABLE":
            held = stores.stored(package.repository_key)
            assert held is not None and sha(held) == package.sha256, package.upload_id


@pytest.mark.parametrize("after", ["read", "publish"])
def test_a_swap_after_the_read_publishes_the_judged_bytes_and_the_swapped_ones_are_rejected(stores, key, after):
    trust(stores.repo, key)
    good, evil = make_package(key, version="1.0.0"), make_package(ec.generate_private_key(ec.SECP256R1()))
    upload_id = slot(stores)
    stores.put(upload_id, good)
    swapping = SwapStaging(stores.storage, stores.put, upload_id, evil, after)
    decided = scan(stores, swapping, upload_id)
    assert swapping.swapped
    assert decided.state == "AVAILABLE" and decided.sha256 == sha(good)
    assert stores.stored(decided.repository_key) == good  # the judged bytes, not the swapped ones
    assert_repository_matches_records(stores)
    assert bytes(stores.storage.read_staging(upload_id, MAX).data) == evil

    # the swap's own notification: the new object is judged as a new upload
    replaced = scan(stores, stores.storage, upload_id)
    evil_etag = stores.storage.staging_etag(upload_id)
    assert replaced.upload_id == replacement_id(upload_id, evil_etag) and replaced.replaces == upload_id
    assert replaced.state == "REJECTED" and replaced.reasons[0].startswith("untrusted-key")
    assert replaced.sha256 == sha(evil) and replaced.staging_etag == evil_etag and replaced.repository_key is None
    assert stores.repo.get_package(upload_id) == decided  # the slot's decision is untouched
    assert stores.stored(decided.repository_key) == good
    # redelivered notifications change nothing
    assert scan(stores, stores.storage, upload_id) == replaced
    assert len(stores.repo.list_packages()) == 2


def test_a_good_replacement_gets_its_own_decision_and_key(stores, key):
    trust(stores.repo, key)
    first, second = make_package(key, version="1.0.0"), make_package(key, version="1.0.0", size=4000)
    upload_id = slot(stores)
    stores.put(upload_id, first)
    decided = scan(stores, SwapStaging(stores.storage, stores.put, upload_id, second), upload_id)
    assert decided.state == "AVAILABLE" and stores.stored(decided.repository_key) == first
    replaced = scan(stores, stores.storage, upload_id)
    assert replaced.state == "AVAILABLE" and replaced.replaces == upload_id and replaced.sha256 == sha(second)
    assert replaced.repository_key != decided.repository_key and stores.stored(replaced.repository_key) == second
    assert stores.repo.get_package(upload_id) == decided
    assert_repository_matches_records(stores)


def test_a_rejected_upload_replaced_by_a_good_one_stays_rejected_under_its_id(stores, key):
    trust(stores.repo, key)
    upload_id = slot(stores)
    stores.put(upload_id, b"not a package")
    rejected = scan(stores, stores.storage, upload_id)
    assert rejected.state == "REJECTED" and rejected.sha256 == sha(b"not a package")
    assert scan(stores, stores.storage, upload_id) == rejected  # same object: nothing new
    good = make_package(key)
    stores.put(upload_id, good)
    replaced = scan(stores, stores.storage, upload_id)
    assert replaced.upload_id != upload_id and replaced.state == "AVAILABLE"
    assert stores.stored(replaced.repository_key) == good
    assert stores.repo.get_package(upload_id) == rejected


def test_an_oversized_replacement_is_rejected_without_being_read(stores, key):
    trust(stores.repo, key)
    good = make_package(key)
    upload_id = slot(stores, size=len(good) + 10)
    stores.put(upload_id, good)
    decided = scan(stores, stores.storage, upload_id)
    assert decided.state == "AVAILABLE"
    stores.put(upload_id, good + b"\0" * 11)
    replaced = scan(stores, stores.storage, upload_id)
    assert replaced.state == "REJECTED" and replaced.reasons[0].startswith("size") and replaced.sha256 is None
    assert replaced.size == len(good) + 11 and stores.repo.get_package(upload_id) == decided


def test_two_scans_racing_on_one_slot_leave_the_current_object_decided(stores, key):
    """The swap's notification is processed while the first scan is still judging the old bytes and
    wins the slot; the first scan loses its save, looks again and finds the slot decided on the object
    staging now holds: the slot's decision describes that object, and the repository matches records."""
    trust(stores.repo, key)
    first, second = make_package(key, version="1.0.0"), make_package(key, version="1.0.1")
    upload_id = slot(stores)
    stores.put(upload_id, first)
    # the other Lambda, handling the swap's notification, decides first
    swapping = SwapStaging(stores.storage, stores.put, upload_id, second,
                           on_swap=lambda uid: scan(stores, stores.storage, uid))
    decided = scan(stores, swapping, upload_id)
    assert decided.state == "AVAILABLE" and decided.version_label == "1.0.1" and decided.sha256 == sha(second)
    assert decided.staging_etag == stores.storage.staging_etag(upload_id)
    assert [p.upload_id for p in stores.repo.list_packages()] == [upload_id]
    assert_repository_matches_records(stores)


def test_a_record_decided_before_etags_were_kept_is_compared_by_content(stores, key):
    from dataclasses import replace

    trust(stores.repo, key)
    good = make_package(key)
    upload_id = slot(stores)
    stores.put(upload_id, good)
    decided = scan(stores, stores.storage, upload_id)
    legacy = replace(decided, staging_etag=None, version=decided.version + 1)
    stores.repo.save_package(legacy)
    assert scan(stores, stores.storage, upload_id) == legacy
    stores.put(upload_id, b"evil")
    replaced = scan(stores, stores.storage, upload_id)
    assert replaced.replaces == upload_id and replaced.state == "REJECTED"
