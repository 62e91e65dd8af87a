"""Storage contract (in-memory fake and S3 on moto): staging reads return bytes and the ETag of that
very read, never more than the limit; the repository is written once with exactly the given bytes, an
existing key is accepted only with the same SHA-256."""

from __future__ import annotations

import base64
import hashlib

import pytest

from chalicelib.domain.ports import RepositoryIntegrityError

from .conftest import REPOSITORY


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_staging_read_carries_the_etag_of_those_bytes(stores):
    storage = stores.storage
    assert storage.read_staging("up-1", 100) is None and storage.staging_etag("up-1") is None
    stores.put("up-1", b"first")
    first = storage.read_staging("up-1", 100)
    assert bytes(first.data) == b"first" and first.size == 5 and first.etag == storage.staging_etag("up-1")
    stores.put("up-1", b"second")  # the presigned PUT again: a new object version, a new ETag
    second = storage.read_staging("up-1", 100)
    assert bytes(second.data) == b"second" and second.etag != first.etag and second.etag == storage.staging_etag("up-1")
    stores.put("up-1", b"first")
    assert storage.read_staging("up-1", 100).etag == first.etag  # same bytes, same single-part ETag


def test_staging_read_never_returns_more_than_the_limit(stores):
    stores.put("up-1", b"x" * 101)
    staged = stores.storage.read_staging("up-1", 100)
    assert staged.data is None and staged.size == 101 and staged.etag == stores.storage.staging_etag("up-1")
    assert bytes(stores.storage.read_staging("up-1", 101).data) == b"x" * 101


def test_publish_writes_exactly_the_given_bytes_once(stores):
    data = b"judged bytes"
    stores.storage.publish("packages/a/1.0.0/k.otapkg", data, sha(data))
    assert stores.stored("packages/a/1.0.0/k.otapkg") == data
    stores.storage.publish("packages/a/1.0.0/k.otapkg", data, sha(data))  # a retry: same bytes, accepted
    with pytest.raises(RepositoryIntegrityError):
        stores.storage.publish("packages/a/1.0.0/k.otapkg", b"other bytes", sha(b"other bytes"))
    assert stores.stored("packages/a/1.0.0/k.otapkg") == data  # never overwritten
    with pytest.raises(ValueError):
        stores.storage.publish("packages/a/1.0.0/j.otapkg", data, sha(b"something else"))
    assert stores.stored("packages/a/1.0.0/j.otapkg") is None
    assert stores.storage.read_range("packages/a/1.0.0/k.otapkg", 7, 5) == b"bytes"


def test_s3_publish_records_the_sha256_and_checks_objects_written_without_one(stores):
    if stores.s3 is None:
        pytest.skip("S3 checksums: moto only")
    data = b"judged bytes"
    stores.storage.publish("packages/a/1.0.0/k.otapkg", data, sha(data))
    head = stores.s3.head_object(Bucket=REPOSITORY, Key="packages/a/1.0.0/k.otapkg", ChecksumMode="ENABLED")
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == sha(data)
    # an object promoted by an older copy has no stored checksum: its bytes are hashed instead
    stores.s3.put_object(Bucket=REPOSITORY, Key="packages/a/1.0.0/old.otapkg", Body=data)
    stores.storage.publish("packages/a/1.0.0/old.otapkg", data, sha(data))
    with pytest.raises(RepositoryIntegrityError):
        stores.storage.publish("packages/a/1.0.0/old.otapkg", b"evil", sha(b"evil"))
    assert stores.stored("packages/a/1.0.0/old.otapkg") == data
