"""The repository contract runs twice: on the in-memory repository and on DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.dynamo import DynamoRepository
from chalicelib.adapters.memory import MemoryRepository
from chalicelib.adapters.provision import ensure_table

from ..functional.fakes import AtomicRequests


@pytest.fixture(params=["memory", "dynamodb"])
def repo(request) -> Iterator[object]:
    if request.param == "memory":
        yield MemoryRepository()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        ensure_table(client, "contract")
        yield DynamoRepository(AtomicRequests(client), "contract")
