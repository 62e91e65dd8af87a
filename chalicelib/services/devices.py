"""Device use cases: pre-authorisation with a one-time token, registration with a CSR, listing, deregistration.

The token is shown once and stored only as its SHA-256. Registration is idempotent for the same
token and the same CSR public key (same certificate back); another key with the same token is a
conflict. Does not: talk MQTT or decide what a device may publish (the broker policy does).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from otaformat import topics
from otaformat.ids import check_epn, check_model
from otaformat.versions import Version

from ..domain import executions as ex
from ..domain.csr import load_csr, public_key_der
from ..domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from ..domain.models import Device, bumped
from ..domain.ports import CertificateSigner, DeviceRegistry, Publisher, Repository
from .common import checked, iso, retrying

TOKEN_TTL = 7 * 24 * 3600
MAX_APPS = 64


@dataclass(frozen=True)
class Preauthorized:
    device: Device
    token: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def preauthorize(repo: Repository, now: float, epn: Any, model: Any, ttl: int = TOKEN_TTL) -> Preauthorized:
    epn = checked("epn", check_epn, epn)
    model = checked("model", check_model, model)
    token = secrets.token_urlsafe(32)
    device = Device(epn=epn, model=model, state="PREAUTHORIZED", token_sha256=token_hash(token),
                    token_expires=now + ttl, created_at=now)
    existing = repo.get_device(epn)
    if existing is None:
        repo.create_device(device)
        return Preauthorized(device, token)
    if existing.state != "DEREGISTERED":
        raise Conflict(f"device {epn!r} already exists (state {existing.state})", field="epn")
    renewed = bumped(existing, model=model, state="PREAUTHORIZED", token_sha256=device.token_sha256,
                     token_expires=device.token_expires, certificate_id=None, certificate_arn=None,
                     certificate_pem=None, public_key_sha256=None, registered_at=None)
    repo.save_device(renewed)
    return Preauthorized(renewed, token)


def _apps(value: Any) -> dict[str, str]:
    from otaformat.ids import check_app

    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_APPS:
        raise InvalidInput(f"field 'apps' must be an object of at most {MAX_APPS} app: version pairs", field="apps")
    for name, version in value.items():
        checked("apps", check_app, name)
        checked(f"apps.{name}", Version.parse, version)
    return dict(value)


def _authenticate(device: Device | None, token: str) -> Device:
    if device is None or not hmac.compare_digest(device.token_sha256, token_hash(token)):
        raise Unauthorized("unknown device or wrong registration token", field="token")
    return device


def register(
    repo: Repository, signer: CertificateSigner, registry: DeviceRegistry, mqtt: tuple[str, int], now: float,
    epn: str, body: dict[str, Any],
) -> dict[str, Any]:
    token = body.get("token")
    if not isinstance(token, str) or not 1 <= len(token) <= 256:
        raise Unauthorized("field 'token' (the registration token) is missing or malformed", field="token")
    _authenticate(repo.get_device(epn), token)  # nothing from an unauthenticated caller is parsed
    csr_pem = body.get("csr")
    if not isinstance(csr_pem, str) or len(csr_pem) > 16384:
        raise InvalidInput("field 'csr' must be a PEM certificate signing request", field="csr")
    load_csr(csr_pem)
    agent_version = checked("agent_version", Version.parse, body.get("agent_version"))
    apps = _apps(body.get("apps"))
    key_sha = hashlib.sha256(public_key_der(csr_pem, csr=True)).hexdigest()

    def attempt() -> Device:
        device = _authenticate(repo.get_device(epn), token)
        if device.state == "DEREGISTERED":
            raise Forbidden(f"device {epn!r} is deregistered", field="epn")
        if device.state == "REGISTERED":
            if device.public_key_sha256 == key_sha:
                return device
            raise Conflict("registration token already used with another key", field="csr")
        if device.token_expires <= now:
            raise Unauthorized("registration token expired", field="token")
        issued = registry.register(epn, device.model, signer.sign(epn, csr_pem))
        registered = bumped(device, state="REGISTERED", registered_at=now, agent_version=str(agent_version),
                            apps=apps, certificate_id=issued.certificate_id, certificate_arn=issued.certificate_arn,
                            certificate_pem=issued.certificate_pem, public_key_sha256=key_sha, last_seen=now)
        repo.save_device(registered)
        return registered

    device = retrying(attempt)
    host, port = mqtt
    return {
        "epn": device.epn,
        "certificate": device.certificate_pem,
        "certificate_id": device.certificate_id,
        "ca": signer.ca_pem(),
        "mqtt": {"host": host, "port": port},
        "topics": topics.device_topics(device.epn),
    }


def get_device(repo: Repository, epn: str) -> Device:
    device = repo.get_device(epn)
    if device is None:
        raise NotFound(f"device {epn!r} does not exist", field="epn")
    return device


def deregister(
    repo: Repository, signer: CertificateSigner, registry: DeviceRegistry, publisher: Publisher, now: float, epn: str
) -> Device:
    def attempt() -> Device:
        device = get_device(repo, epn)
        if device.state == "DEREGISTERED":
            return device
        if device.certificate_pem:
            signer.revoke(device.certificate_pem)
        registry.deregister(epn, device.certificate_id, device.certificate_arn)
        gone = bumped(device, state="DEREGISTERED")
        repo.save_device(gone)
        return gone

    device = retrying(attempt)
    for execution in repo.list_device_executions(epn):
        def stop(execution_id: str = execution.execution_id) -> None:
            current = repo.get_execution(execution_id)
            moved = current and ex.cancel(current, now, "device deregistered")
            if moved:
                repo.save_execution(bumped(moved))

        retrying(stop)
    return device


def device_view(device: Device) -> dict[str, Any]:
    return {
        "epn": device.epn, "model": device.model, "state": device.state, "agent_version": device.agent_version,
        "apps": dict(device.apps), "registered_at": iso(device.registered_at), "certificate_id": device.certificate_id,
        "created_at": iso(device.created_at), "last_seen": iso(device.last_seen),
    }
