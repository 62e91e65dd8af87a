"""Pure checks of certificate signing requests (cryptography only, no I/O)."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import InvalidInput


def load_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR with a valid self-signature and an EC or >=2048-bit RSA key; else InvalidInput('csr')."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnicodeEncodeError) as err:
        raise InvalidInput("field 'csr' is not a PEM certificate signing request", field="csr") from err
    if not valid:
        raise InvalidInput("field 'csr' has an invalid signature", field="csr")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InvalidInput("field 'csr' must hold an EC or RSA public key", field="csr")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise InvalidInput("field 'csr' RSA key must be at least 2048 bits", field="csr")
    return csr


def public_key_der(pem: str, *, csr: bool) -> bytes:
    obj: Any = load_csr(pem) if csr else x509.load_pem_x509_certificate(pem.encode())
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
