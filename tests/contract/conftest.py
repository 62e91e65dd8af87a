"""The contracts run twice: on the in-memory adapters and on the AWS ones (DynamoDB and S3 on moto)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib.adapters.dynamo import DynamoRepository
from chalicelib.adapters.memory import MemoryRepository, MemoryStorage
from chalicelib.adapters.provision import ensure_table
from chalicelib.adapters.s3 import S3Storage, upload_key

from ..functional.fakes import AtomicRequests

STAGING, REPOSITORY = "contract-staging", "contract-repository"


@pytest.fixture(params=["memory", "dynamodb"])
def repo(request) -> Iterator[object]:
    if request.param == "memory":
        yield MemoryRepository()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        ensure_table(client, "contract")
        yield DynamoRepository(AtomicRequests(client), "contract")


@dataclass
class Stores:
    """A repository and a storage of one kind, plus what the outside world does to them: `put` is a PUT
    on the upload's presigned URL (overwrites staging), `stored` reads a repository object (None if absent),
    `s3` is the boto3 client on moto (None for the in-memory kind)."""

    kind: str
    repo: Any
    storage: Any
    put: Callable[[str, bytes], None]
    stored: Callable[[str], bytes | None]
    s3: Any = None


@pytest.fixture(params=["memory", "moto"])
def stores(request) -> Iterator[Stores]:
    if request.param == "memory":
        storage = MemoryStorage()

        def stored_in_memory(key: str) -> bytes | None:
            return storage.read_range(key, 0, 1 << 40) if key in storage.repository_keys() else None

        yield Stores("memory", MemoryRepository(), storage, storage.put_staging, stored_in_memory)
        return
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        s3 = session.client("s3")
        for bucket in (STAGING, REPOSITORY):
            s3.create_bucket(Bucket=bucket)
        dynamodb = session.client("dynamodb")
        ensure_table(dynamodb, "contract")

        def put(upload_id: str, data: bytes) -> None:
            s3.put_object(Bucket=STAGING, Key=upload_key(upload_id), Body=data)

        def stored_in_s3(key: str) -> bytes | None:
            try:
                return bytes(s3.get_object(Bucket=REPOSITORY, Key=key)["Body"].read())
            except ClientError as err:
                if err.response["Error"]["Code"] == "NoSuchKey":
                    return None
                raise

        yield Stores("moto", DynamoRepository(AtomicRequests(dynamodb), "contract"),
                     S3Storage(s3, STAGING, REPOSITORY), put, stored_in_s3, s3)
