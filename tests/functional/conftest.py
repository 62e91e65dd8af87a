"""Fixtures for functional tests: moto (mock_aws), provisioned resources, a container with fakes
injected through chalicelib.bootstrap.configure, and a chalice test client with an operator token."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import certifi
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import bootstrap
from chalicelib.adapters.dynamo import DynamoRepository
from chalicelib.adapters.provision import ensure_resources
from chalicelib.settings import Settings

from .fakes import AtomicRequests, FakeClock, FakeSigner, RecordingPublisher

TOKEN = "operator-secret-token"
REGION = "us-east-1"


@pytest.fixture
def env() -> dict[str, str]:
    return {
        "OTA_TABLE_NAME": "ota-test", "OTA_STAGING_BUCKET": "ota-staging", "OTA_REPOSITORY_BUCKET": "ota-repository",
        "OTA_STAGING_QUEUE": "ota-staging", "OTA_DEVICE_QUEUE": "ota-device", "OTA_PUBLISHER": "iot-data",
        "OTA_SIGNER": "iot", "OTA_AUTH": "token", "OTA_MQTT_HOST": "mqtt.example.test", "OTA_MQTT_PORT": "8883",
        "OTA_OPERATOR_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest(),
        "OTA_MAX_PACKAGE_BYTES": str(32 * 1024 * 1024),
        "OTA_MQTT_CA": certifi.where(),  # the iot signer requires a CA file (a PEM bundle stands in)
    }


@dataclass
class World:
    settings: Settings
    session: Any
    container: bootstrap.Container
    publisher: RecordingPublisher
    signer: FakeSigner
    clock: FakeClock
    queues: dict[str, str]


@pytest.fixture
def world(env: dict[str, str]) -> Iterator[World]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing",
                                        aws_secret_access_key="testing")
        settings = Settings.from_env(env)
        queues = ensure_resources(settings, session)
        container = bootstrap.build(settings, session)
        container.repository = DynamoRepository(AtomicRequests(session.client("dynamodb")), settings.table_name)
        publisher, signer, clock = RecordingPublisher(), FakeSigner(), FakeClock()
        container.publisher, container.signer, container.clock = publisher, signer, clock
        bootstrap.configure(container)
        try:
            yield World(settings, session, container, publisher, signer, clock, queues)
        finally:
            bootstrap.reset()


class Api:
    """Chalice test client with the operator token and JSON bodies."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        response = getattr(self.client.http, method.lower())(path, headers=sent, body=data)
        response.json = json.loads(response.body) if response.body else None
        return response


@pytest.fixture
def api(world: World) -> Iterator[Api]:
    import app as application

    with Client(application.app) as client:
        yield Api(client)
