"""First-boot registration: EC P-256 key and CSR (CN = EPN ID), POST /devices/{epn}/register (docs/api.md).

Stores the key (0600, before the request, so a retry after a crash uses the same key and the API
accepts the token again), certificate and CA under data_dir/tls and the broker address the API
returned in data_dir/tls/broker.json. Does nothing when a certificate is already stored. The registration
token is sent once and never stored or logged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .store import atomic_write


class RegistrationError(Exception):
    """Registration failed; the message says why (HTTP status and the API's message)."""


@dataclass(frozen=True)
class Credentials:
    ca: str
    cert: str
    key: str
    host: str | None
    port: int | None


def tls_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "tls")


def stored_credentials(data_dir: str) -> Credentials | None:
    d = tls_dir(data_dir)
    paths = [os.path.join(d, n) for n in ("ca.pem", "device.crt", "device.key")]
    if not all(os.path.isfile(p) for p in paths):
        return None
    host = port = None
    try:
        with open(os.path.join(d, "broker.json")) as f:
            broker = json.load(f)
        host, port = str(broker["host"]), int(broker["port"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return Credentials(*paths, host, port)


def make_csr(epn: str, key_pem: bytes | None = None) -> tuple[bytes, bytes]:
    """(key PEM, CSR PEM) for `epn`, with a new key unless `key_pem` gives the one to use."""
    key = ec.generate_private_key(ec.SECP256R1()) if key_pem is None else \
        serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise RegistrationError("the stored device key is not an EC key")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, epn)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def _device_key(data_dir: str) -> bytes | None:
    try:
        with open(os.path.join(tls_dir(data_dir), "device.key"), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def register(api_url: str, token: str, epn: str, data_dir: str, agent_version: str, apps: dict[str, str],
             *, timeout: float = 30.0) -> Credentials:
    # The key is stored before the request and reused by a retry: the API accepts the token again for
    # the same key, so a crash after it answered (token used) but before the certificate was stored
    # does not lock the device out.
    try:
        key_pem, csr_pem = make_csr(epn, _device_key(data_dir))
    except ValueError as err:
        raise RegistrationError(f"the stored device key is unusable: {err}") from err
    d = tls_dir(data_dir)
    os.makedirs(d, mode=0o700, exist_ok=True)
    atomic_write(os.path.join(d, "device.key"), key_pem, 0o600)
    url = f"{api_url.rstrip('/')}/devices/{epn}/register"
    body = {"token": token, "csr": csr_pem.decode(), "agent_version": agent_version, "apps": apps}
    try:
        response = requests.post(url, json=body, timeout=timeout)
    except requests.RequestException as err:
        raise RegistrationError(f"registration request to {url} failed: {err}") from err
    if response.status_code != 200:
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = response.text[:200]
        raise RegistrationError(f"registration refused with HTTP {response.status_code}: {message}")
    try:
        answer = response.json()
        cert, ca = answer["certificate"], answer["ca"]
        mqtt = answer.get("mqtt") or {}
        x509.load_pem_x509_certificate(cert.encode())
        x509.load_pem_x509_certificate(ca.encode())
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise RegistrationError(f"registration answer is not usable: {err}") from err
    atomic_write(os.path.join(d, "ca.pem"), ca.encode(), 0o644)
    broker = {"host": mqtt.get("host"), "port": mqtt.get("port")}
    atomic_write(os.path.join(d, "broker.json"), json.dumps(broker).encode(), 0o644)
    # the certificate last: once it exists, everything stored_credentials reads is there (a crash
    # in between registers again, with the same key)
    atomic_write(os.path.join(d, "device.crt"), cert.encode(), 0o644)
    creds = stored_credentials(data_dir)
    assert creds is not None
    return creds
