"""Certificate signers (AWS IoT or a local CA) and the IoT registry (things, policy, principals).

`IotSigner` asks IoT to sign the CSR (create_certificate_from_csr). `LocalCaSigner` signs it with the
CA in OTA_LOCAL_CA_DIR (ca.pem, ca.key; subject CN = EPN ID, which mosquitto uses as username and
client id) and, on revocation, rewrites `crl.pem` there (mosquitto reads `crlfile` at start).
`IotRegistry` registers the certificate when the signer did not, creates the thing with attribute
`model` (the policy variable `${iot:Connection.Thing.Attributes[model]}` that lets a device read its own
model's group topics), attaches the device policy and the principal. `LocalModelRoles` wraps a registry
for the local stack: it also records {epn: model} in `device-models.json` in the CA directory, from
which local/mosquitto.py writes one ACL entry per device for its model's group topics (docs/protocol.md
15.5). Does not: decide who may register.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..domain.csr import load_csr
from ..domain.ports import IssuedCertificate

CERT_DAYS = 3650
_LOCK = threading.Lock()


class LocalCaSigner:
    def __init__(self, ca_dir: str) -> None:
        self._dir = Path(ca_dir)

    def _ca(self) -> tuple[x509.Certificate, Any]:
        cert = x509.load_pem_x509_certificate((self._dir / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((self._dir / "ca.key").read_bytes(), password=None)
        return cert, key

    def ca_pem(self) -> str:
        return (self._dir / "ca.pem").read_text()

    def sign(self, epn: str, csr_pem: str) -> IssuedCertificate:
        csr = load_csr(csr_pem)
        ca_cert, ca_key = self._ca()
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, epn)]))
            .issuer_name(ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return IssuedCertificate(certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode())

    def revoke(self, certificate_pem: str) -> None:
        serial = x509.load_pem_x509_certificate(certificate_pem.encode()).serial_number
        with _LOCK:
            listing = self._dir / "revoked.json"
            revoked = json.loads(listing.read_text()) if listing.exists() else []
            if str(serial) not in revoked:
                revoked.append(str(serial))
            _atomic_write(listing, json.dumps(revoked).encode())
            _atomic_write(self._dir / "crl.pem", self._crl([int(s) for s in revoked]))

    def _crl(self, serials: list[int]) -> bytes:
        ca_cert, ca_key = self._ca()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=365))
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class IotSigner:
    """AWS IoT signs the CSR. The device trusts `ca_pem` (the CA of the IoT endpoint, from OTA_MQTT_CA)."""

    def __init__(self, client: Any, endpoint_ca_pem: str = "") -> None:
        self._iot = client
        self._ca = endpoint_ca_pem

    def ca_pem(self) -> str:
        return self._ca

    def sign(self, epn: str, csr_pem: str) -> IssuedCertificate:
        load_csr(csr_pem)
        answer = self._iot.create_certificate_from_csr(certificateSigningRequest=csr_pem, setAsActive=True)
        return IssuedCertificate(answer["certificatePem"], answer["certificateId"], answer["certificateArn"])

    def revoke(self, certificate_pem: str) -> None:
        """IoT revocation happens in the registry (update_certificate REVOKED)."""


def device_policy_document() -> dict[str, Any]:
    """A device may connect as its thing name and use only ota/<its name>/..., and read the group topics
    of its own model (the thing's `model` attribute; docs/protocol.md 15). Same as infra/template.yaml."""
    prefix = "arn:aws:iot:*:*:"
    me = "${iot:Connection.Thing.ThingName}"
    model = "${iot:Connection.Thing.Attributes[model]}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{prefix}client/{me}"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": [f"{prefix}topic/ota/{me}/{leaf}" for leaf in ("ack", "get", "status", "cmd/result")]},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": [f"{prefix}topicfilter/ota/{me}/{leaf}" for leaf in ("job", "blk", "cmd")]
             + [f"{prefix}topicfilter/ota/g/{model}/*"]},
            {"Effect": "Allow", "Action": "iot:Receive",
             "Resource": [f"{prefix}topic/ota/{me}/{leaf}" for leaf in ("job", "blk", "cmd")]
             + [f"{prefix}topic/ota/g/{model}/*"]},
        ],
    }


class IotRegistry:
    def __init__(self, client: Any, policy_name: str) -> None:
        self._iot = client
        self._policy = policy_name

    def _ensure_policy(self) -> None:
        try:
            self._iot.get_policy(policyName=self._policy)
        except ClientError:
            try:
                self._iot.create_policy(policyName=self._policy, policyDocument=json.dumps(device_policy_document()))
            except ClientError as err:
                if err.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                    raise

    def register(self, epn: str, model: str, issued: IssuedCertificate) -> IssuedCertificate:
        if issued.certificate_id is None:
            try:
                answer = self._iot.register_certificate_without_ca(certificatePem=issued.certificate_pem,
                                                                   status="ACTIVE")
            except ClientError as err:
                if err.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                    raise
                answer = self._iot.describe_certificate(certificateId=_pem_fingerprint(issued.certificate_pem))
                answer = answer["certificateDescription"]
            issued = IssuedCertificate(issued.certificate_pem, answer["certificateId"], answer["certificateArn"])
        self._ensure_policy()
        try:
            self._iot.create_thing(thingName=epn, attributePayload={"attributes": {"model": model}})
        except ClientError as err:
            if err.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
        self._iot.attach_policy(policyName=self._policy, target=issued.certificate_arn)
        self._iot.attach_thing_principal(thingName=epn, principal=issued.certificate_arn)
        return issued

    def deregister(self, epn: str, certificate_id: str | None, certificate_arn: str | None) -> None:
        if certificate_id is None or certificate_arn is None:
            return
        self._iot.update_certificate(certificateId=certificate_id, newStatus="REVOKED")
        for call, kwargs in (
            (self._iot.detach_thing_principal, {"thingName": epn, "principal": certificate_arn}),
            (self._iot.detach_policy, {"policyName": self._policy, "target": certificate_arn}),
        ):
            with contextlib.suppress(ClientError):
                call(**kwargs)


MODEL_ROLES = "device-models.json"  # local/mosquitto.py ROLES_FILE


class LocalModelRoles:
    """A DeviceRegistry that also keeps {epn: model} next to the local CA's CRL (the local broker's
    per-device group-topic ACL entries are made from it)."""

    def __init__(self, inner: Any, ca_dir: str) -> None:
        self._inner = inner
        self._path = Path(ca_dir) / MODEL_ROLES

    def _update(self, epn: str, model: str | None) -> None:
        with _LOCK:
            try:
                roles = json.loads(self._path.read_text())
            except (OSError, ValueError):
                roles = {}
            if model is None:
                roles.pop(epn, None)
            else:
                roles[epn] = model
            _atomic_write(self._path, json.dumps(roles, sort_keys=True).encode())

    def register(self, epn: str, model: str, issued: IssuedCertificate) -> IssuedCertificate:
        done: IssuedCertificate = self._inner.register(epn, model, issued)
        self._update(epn, model)
        return done

    def deregister(self, epn: str, certificate_id: str | None, certificate_arn: str | None) -> None:
        self._inner.deregister(epn, certificate_id, certificate_arn)
        self._update(epn, None)


def _pem_fingerprint(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex()
