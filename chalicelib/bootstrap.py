"""Composition root: builds the adapters named by Settings once per container, lazily, on first use.

Tests and the local stack inject their own container with `configure(...)` (e.g. in-memory fakes for
the publisher and signer); `reset()` forgets it. Nothing else in chalicelib builds clients.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .domain.ports import CertificateSigner, Clock, DeviceRegistry, MalwareScanner, Publisher, Repository, Storage
from .services.device_messages import HotCache
from .settings import Settings


@dataclass
class Container:
    settings: Settings
    repository: Repository
    storage: Storage
    publisher: Publisher
    signer: CertificateSigner
    registry: DeviceRegistry
    scanner: MalwareScanner
    clock: Clock = field(default=time.time)
    cache: HotCache = field(default_factory=HotCache)


_lock = threading.Lock()
_current: Container | None = None


def configure(container: Container | None) -> None:
    """Use `container` from now on (None: build from the environment on next use)."""
    global _current
    with _lock:
        _current = container


def reset() -> None:
    configure(None)


def get() -> Container:
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = build(Settings.from_env())
    return _current


def build(settings: Settings, session: Any = None) -> Container:
    """The production wiring: boto3 clients from one session, adapters chosen by settings."""
    import boto3

    from .adapters.certificates import IotRegistry, IotSigner, LocalCaSigner
    from .adapters.dynamo import DynamoRepository
    from .adapters.pacing import PacedPublisher
    from .adapters.publisher import IotDataPublisher, MqttPublisher
    from .adapters.s3 import S3Storage
    from .services.scan import BuiltinScanner

    session = session or boto3.session.Session()
    iot = session.client("iot")
    publisher: Publisher
    if settings.publisher == "mqtt":
        publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, settings.mqtt_client_cert or "",
                                  settings.mqtt_client_key or "", settings.mqtt_ca or "")
    else:
        # the account's ATS data endpoint is the device-facing host; moto (AWS_ENDPOINT_URL) serves all
        endpoint = None if os.environ.get("AWS_ENDPOINT_URL") else f"https://{settings.mqtt_host}"
        publisher = IotDataPublisher(session.client("iot-data", endpoint_url=endpoint))
    if settings.device_publish_rate or settings.device_byte_rate:
        publisher = PacedPublisher(publisher, settings.device_publish_rate, settings.device_byte_rate)
    signer: CertificateSigner
    if settings.signer == "local-ca":
        signer = LocalCaSigner(settings.local_ca_dir or "")
    else:
        ca = ""
        if settings.mqtt_ca:
            with open(settings.mqtt_ca, encoding="ascii") as handle:
                ca = handle.read()
        signer = IotSigner(iot, ca)
    return Container(
        settings=settings,
        repository=DynamoRepository(session.client("dynamodb"), settings.table_name),
        storage=S3Storage(session.client("s3"), settings.staging_bucket, settings.repository_bucket),
        publisher=publisher,
        signer=signer,
        registry=IotRegistry(iot, settings.iot_policy_name),
        scanner=BuiltinScanner(),
    )
