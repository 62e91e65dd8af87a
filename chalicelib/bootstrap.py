"""Composition root: builds the adapters named by Settings once per container, lazily, on first use.

Tests and the local stack inject their own container with `configure(...)` (e.g. in-memory fakes for
the publisher and signer); `reset()` forgets it. Nothing else in chalicelib builds clients.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .domain.ports import (
    CertificateSigner,
    Clock,
    DeviceRegistry,
    FanoutQueue,
    MalwareScanner,
    Publisher,
    Repository,
    Storage,
)
from .services.device_messages import HotCache
from .services.pacing import Pacing
from .settings import Settings, SettingsError

BUNDLE_ROOT = Path(__file__).resolve().parent.parent  # /var/task on Lambda: app.py, chalicelib/, vendor's files


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
    fanout: FanoutQueue | None = None  # None: job fan-out runs inside the request (services/jobs.py)
    pacing: Pacing | None = None  # per-device block budget and wakes (services/pacing.py); None: unlimited


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

    from .adapters.certificates import IotRegistry, IotSigner, LocalCaSigner, LocalModelRoles
    from .adapters.dynamo import DynamoRepository
    from .adapters.fanout import SqsFanoutQueue
    from .adapters.malware import GuardDutyScanner
    from .adapters.publisher import IotDataPublisher, MqttPublisher
    from .adapters.s3 import S3Storage
    from .adapters.wake import SqsWakeQueue
    from .domain.pacing import Pace
    from .services.scan import BuiltinScanner

    session = session or boto3.session.Session()
    iot = session.client("iot")
    s3 = session.client("s3")
    scanner: MalwareScanner = BuiltinScanner()  # the local default: EICAR check only, and says so
    if settings.malware_engine == "guardduty":
        scanner = GuardDutyScanner(s3, settings.staging_bucket)
    publisher: Publisher
    if settings.publisher == "mqtt":
        publisher = MqttPublisher(settings.mqtt_host, settings.mqtt_port, settings.mqtt_client_cert or "",
                                  settings.mqtt_client_key or "", settings.mqtt_ca or "")
    else:
        # the account's ATS data endpoint is the device-facing host; moto (AWS_ENDPOINT_URL) serves all
        endpoint = None if os.environ.get("AWS_ENDPOINT_URL") else f"https://{settings.mqtt_host}"
        publisher = IotDataPublisher(session.client("iot-data", endpoint_url=endpoint))
    pacing: Pacing | None = None
    if settings.device_publish_rate or settings.device_byte_rate:
        # block sends (unicast and group broadcasts) are budgeted per execution / group and continued by
        # delayed wakes on the device queue: no handler sleeps (services/pacing.py)
        pacing = Pacing(Pace(settings.device_publish_rate, settings.device_byte_rate),
                        SqsWakeQueue(session.client("sqs"), settings.device_queue), time.time)
    signer: CertificateSigner
    registry: DeviceRegistry = IotRegistry(iot, settings.iot_policy_name)
    if settings.signer == "local-ca":
        signer = LocalCaSigner(settings.local_ca_dir or "")
        registry = LocalModelRoles(registry, settings.local_ca_dir or "")  # the local broker's group ACL
    else:
        signer = IotSigner(iot, read_ca(settings.mqtt_ca or ""))
    fanout = SqsFanoutQueue(session.client("sqs"), settings.fanout_queue) if settings.fanout_queue else None
    return Container(
        settings=settings,
        repository=DynamoRepository(session.client("dynamodb"), settings.table_name),
        storage=S3Storage(s3, settings.staging_bucket, settings.repository_bucket),
        publisher=publisher,
        signer=signer,
        registry=registry,
        scanner=scanner,
        fanout=fanout,
        pacing=pacing,
    )


def read_ca(path: str) -> str:
    """The PEM CA certificate(s) at `path` (relative: to the bundle root); SettingsError if unusable.

    With the `iot` signer this is what registration hands to devices as their broker's trust anchor:
    an empty or wrong answer would leave every device unable to connect, so it fails at start instead."""
    file = Path(path)
    if not file.is_absolute():  # the bundle's root on Lambda; vendor/ in a checkout (infra/package.py fills it)
        bundled, vendored = BUNDLE_ROOT / file, BUNDLE_ROOT / "vendor" / file
        file = vendored if vendored.exists() and not bundled.exists() else bundled
    try:
        text = file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"invalid OTA settings: OTA_MQTT_CA={path!r} cannot be read ({err})") from err
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise SettingsError(f"invalid OTA settings: OTA_MQTT_CA={path!r} holds no PEM certificate")
    return text
