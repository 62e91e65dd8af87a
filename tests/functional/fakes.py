"""Test doubles injected through the composition root: a recording publisher, an in-memory CA signer,
a settable clock, and builders for keys, packages, CSRs and device-message SQS events."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib.domain.csr import load_csr
from chalicelib.domain.ports import IssuedCertificate
from otaformat import messages, signing, wire
from otaformat.build import BuildSpec, SourceFile, build_full

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()


@dataclass
class FakeClock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingPublisher:
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    flushes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.sent.append((topic, bytes(payload)))

    def flush(self) -> None:
        self.flushes += 1

    def on(self, epn: str, leaf: str) -> list[bytes]:
        return [p for t, p in self.sent if t == f"ota/{epn}/{leaf}"]

    def job_documents(self, epn: str) -> list[messages.JobDocument]:
        docs = []
        for payload in self.on(epn, "job"):
            decoded = messages.decode(payload)
            if isinstance(decoded, messages.JobDocument):
                docs.append(decoded)
        return docs

    def cancels(self, epn: str) -> list[str]:
        return [d.execution_id for d in (messages.decode(p) for p in self.on(epn, "job"))
                if isinstance(d, messages.Cancel)]

    def frames(self, epn: str) -> list[wire.BlockFrame]:
        return [wire.decode_frame(p) for p in self.on(epn, "blk")]

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()


class FakeSigner:
    """An in-memory CA: signs CSRs with CN = EPN ID, records revocations."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.revoked: list[str] = []
        self.signed = 0

    def ca_pem(self) -> str:
        return self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, epn: str, csr_pem: str) -> IssuedCertificate:
        csr = load_csr(csr_pem)
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, epn)]))
            .issuer_name(self._cert.subject).public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
            .sign(self._key, hashes.SHA256())
        )
        self.signed += 1
        return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM).decode())

    def revoke(self, certificate_pem: str) -> None:
        self.revoked.append(certificate_pem)


def make_csr(epn: str, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, epn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def make_package(key: ec.EllipticCurvePrivateKey, *, app: str = "demo", version: str = "1.0.0",
                 models: tuple[str, ...] = ("model-a",), size: int = 5000, expires: str = "2030-01-01T00:00:00Z",
                 content: bytes | None = None) -> bytes:
    spec = BuildSpec(app=app, version=version, models=models, created="2026-11-01T00:00:00Z", expires=expires,
                     compression="none")
    data = content if content is not None else bytes((i * 7 + len(version)) % 251 for i in range(size))
    return build_full(spec, [SourceFile("bin/data.bin", data)], key)


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return signing.public_key_pem(key.public_key()).decode()


def device_event(items: Iterable[tuple[str, str, bytes]], received_ms: int | None = None) -> dict[str, Any]:
    """An SQS event for the device-message handler; items are (epn, leaf, raw payload)."""
    records = []
    for n, (epn, leaf, payload) in enumerate(items):
        body = {"topic": f"ota/{epn}/{leaf}", "payload_b64": base64.b64encode(payload).decode(),
                "received_at": (received_ms if received_ms is not None else int(NOW * 1000)) + n}
        records.append(sqs_record(json.dumps(body)))
    return {"Records": records}


def sqs_record(body: str) -> dict[str, Any]:
    return {"messageId": str(uuid.uuid4()), "receiptHandle": "rh-" + uuid.uuid4().hex, "body": body,
            "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}


def status(execution_id: str, state: str, step: str | None = None, seq: int = 0, reason: str | None = None) -> bytes:
    return messages.encode(messages.Status(execution_id, state, step, reason, seq))


def scheduled_event() -> dict[str, Any]:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-12-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {}}


class AtomicRequests:
    """Wraps a boto3 client so each request is atomic, as it is on the real service.

    In-process moto checks a condition expression and then writes without a lock, so two threads can
    both pass `attribute_not_exists`; DynamoDB itself evaluates every request (and every transaction)
    atomically. Requests from different threads still interleave freely between calls."""

    _lock = threading.Lock()

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            with AtomicRequests._lock:
                return target(*args, **kwargs)

        return call
