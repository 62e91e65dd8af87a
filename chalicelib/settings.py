"""Settings of the control plane, read once from the environment (resource names only, never secrets).

Does: parse and validate every OTA_* variable, failing fast with one message listing every problem.
Does not: read credentials or region (boto3 finds AWS_* itself), create resources, or cache anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

PUBLISHERS = ("iot-data", "mqtt")
SIGNERS = ("iot", "local-ca")
AUTH_MODES = ("iam", "token")
MALWARE_ENGINES = ("builtin", "guardduty")  # builtin: the EICAR check, the local default (not an engine)
DEFAULT_MAX_PACKAGE_BYTES = 512 * 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class SettingsError(ValueError):
    """The environment does not describe a usable configuration; the message lists every problem."""


@dataclass(frozen=True)
class Settings:
    table_name: str
    staging_bucket: str
    repository_bucket: str
    staging_queue: str
    device_queue: str
    publisher: str
    signer: str
    auth: str
    mqtt_host: str
    mqtt_port: int
    operator_token_sha256: str | None = None
    local_ca_dir: str | None = None
    mqtt_client_cert: str | None = None
    mqtt_client_key: str | None = None
    mqtt_ca: str | None = None
    iot_policy_name: str = "ota-device"
    max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES
    device_publish_rate: int = 0  # cloud->device publishes per second per device; 0 = unlimited
    device_byte_rate: int = 0  # cloud->device bytes per second per device; 0 = unlimited
    malware_engine: str = "builtin"  # OTA_MALWARE_ENGINE: builtin | guardduty (chalicelib/adapters/malware.py)
    fanout_queue: str | None = None  # OTA_FANOUT_QUEUE: job fan-out work; unset: fan-out runs in the request

    @property
    def staging_dlq(self) -> str:
        return f"{self.staging_queue}-dlq"

    @property
    def device_dlq(self) -> str:
        return f"{self.device_queue}-dlq"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Build Settings from `environ`; raise SettingsError naming every missing or invalid variable."""
        problems: list[str] = []

        def need(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                problems.append(f"{name} is missing")
            return value

        def opt(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        def choice(name: str, options: tuple[str, ...]) -> str:
            value = need(name)
            if value and value not in options:
                problems.append(f"{name}={value!r} must be one of {', '.join(options)}")
            return value

        def integer(name: str, text: str | None, low: int, high: int) -> int:
            if text is None or text == "":
                return low
            try:
                number = int(text)
            except ValueError:
                problems.append(f"{name}={text!r} is not an integer")
                return low
            if not low <= number <= high:
                problems.append(f"{name}={number} is outside {low}..{high}")
            return number

        table = need("OTA_TABLE_NAME")
        staging_bucket = need("OTA_STAGING_BUCKET")
        repository_bucket = need("OTA_REPOSITORY_BUCKET")
        staging_queue = need("OTA_STAGING_QUEUE")
        device_queue = need("OTA_DEVICE_QUEUE")
        publisher = choice("OTA_PUBLISHER", PUBLISHERS)
        signer = choice("OTA_SIGNER", SIGNERS)
        auth = choice("OTA_AUTH", AUTH_MODES)
        mqtt_host = need("OTA_MQTT_HOST")
        port_text = need("OTA_MQTT_PORT")
        mqtt_port = integer("OTA_MQTT_PORT", port_text, 1, 65535) if port_text else 0
        token_hash = opt("OTA_OPERATOR_TOKEN_SHA256")
        ca_dir = opt("OTA_LOCAL_CA_DIR")
        client_cert, client_key, mqtt_ca = opt("OTA_MQTT_CLIENT_CERT"), opt("OTA_MQTT_CLIENT_KEY"), opt("OTA_MQTT_CA")
        max_bytes_text = opt("OTA_MAX_PACKAGE_BYTES")
        max_bytes = DEFAULT_MAX_PACKAGE_BYTES
        if max_bytes_text:
            max_bytes = integer("OTA_MAX_PACKAGE_BYTES", max_bytes_text, 1, 4 << 30)
        publish_rate = integer("OTA_DEVICE_PUBLISH_RATE", opt("OTA_DEVICE_PUBLISH_RATE"), 0, 100_000)
        byte_rate = integer("OTA_DEVICE_BYTE_RATE", opt("OTA_DEVICE_BYTE_RATE"), 0, 1 << 30)
        engine = opt("OTA_MALWARE_ENGINE") or "builtin"
        if engine not in MALWARE_ENGINES:
            problems.append(f"OTA_MALWARE_ENGINE={engine!r} must be one of {', '.join(MALWARE_ENGINES)}")
        if auth == "token":
            if token_hash is None:
                problems.append("OTA_OPERATOR_TOKEN_SHA256 is missing (required when OTA_AUTH=token)")
            elif not _HEX64.fullmatch(token_hash.lower()):
                problems.append("OTA_OPERATOR_TOKEN_SHA256 must be 64 hex characters (sha256 of the token)")
        if signer == "iot" and mqtt_ca is None:
            problems.append("OTA_MQTT_CA is missing (required when OTA_SIGNER=iot: the Amazon root CA file handed to "
                            "devices at registration; the bundle ships AmazonRootCA1.pem)")
        if signer == "local-ca" and ca_dir is None:
            problems.append("OTA_LOCAL_CA_DIR is missing (required when OTA_SIGNER=local-ca)")
        if publisher == "mqtt":
            for name, value in (("OTA_MQTT_CLIENT_CERT", client_cert), ("OTA_MQTT_CLIENT_KEY", client_key),
                                ("OTA_MQTT_CA", mqtt_ca)):
                if value is None:
                    problems.append(f"{name} is missing (required when OTA_PUBLISHER=mqtt)")
        if problems:
            raise SettingsError("invalid OTA settings: " + "; ".join(problems))
        return cls(
            table_name=table, staging_bucket=staging_bucket, repository_bucket=repository_bucket,
            staging_queue=staging_queue, device_queue=device_queue, publisher=publisher, signer=signer,
            auth=auth, mqtt_host=mqtt_host, mqtt_port=mqtt_port,
            operator_token_sha256=token_hash.lower() if token_hash else None, local_ca_dir=ca_dir,
            mqtt_client_cert=client_cert, mqtt_client_key=client_key, mqtt_ca=mqtt_ca,
            iot_policy_name=opt("OTA_IOT_POLICY_NAME") or "ota-device", max_package_bytes=max_bytes,
            device_publish_rate=publish_rate, device_byte_rate=byte_rate, malware_engine=engine,
            fanout_queue=opt("OTA_FANOUT_QUEUE"),
        )
