"""A local certificate authority for the one-machine stack: it stands in for AWS IoT's device certificates.

It makes the CA (ca.key, ca.pem), the broker's server certificate (SAN 127.0.0.1 and localhost), the
cloud side's own MQTT client certificates, device certificates (for tests; in the stack the API's
local-ca signer signs device CSRs), and the certificate revocation list (crl.pem). Files are written
with 0600 for keys. It does not start anything and knows nothing about mosquitto or the API.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CRL = "crl.pem"
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key as files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class LocalCA:
    """The CA files in one directory; load with `LocalCA.create_or_load(directory)`."""

    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT

    @property
    def key_path(self) -> Path:
        return self.directory / CA_KEY

    @property
    def crl_path(self) -> Path:
        return self.directory / CRL

    @classmethod
    def create_or_load(cls, directory: Path, common_name: str = "OTA local CA") -> LocalCA:
        """Use the CA in `directory`, creating it (and an empty CRL) when it does not exist yet."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory)
        if not ca.cert_path.exists() or not ca.key_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
            now = _now()
            cert = (
                x509.CertificateBuilder()
                .subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + 10 * VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            _write_key(ca.key_path, key)
            ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if not ca.crl_path.exists():
            ca.write_crl([])
        return ca

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.key_path} is not an EC private key")
        return cert, key

    def sign_csr(self, csr_pem: bytes, common_name: str, *, server: bool = False,
                 alt_names: tuple[str, ...] = ()) -> bytes:
        """Sign a CSR, keeping only its public key: the subject is `common_name`, whatever the CSR says."""
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("CSR signature does not verify")
        return self._issue(csr.public_key(), common_name, server=server, alt_names=alt_names)

    def _issue(self, public_key: CertificatePublicKeyTypes, common_name: str, *, server: bool,
               alt_names: tuple[str, ...]) -> bytes:
        ca_cert, ca_key = self._load()
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if alt_names:
            sans: list[x509.GeneralName] = []
            for alt in alt_names:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(alt)))
                except ValueError:
                    sans.append(x509.DNSName(alt))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def issue(self, directory: Path, name: str, common_name: str, *, server: bool = False,
              alt_names: tuple[str, ...] = ()) -> Issued:
        """Make a key and a certificate signed by this CA as `<name>.key` / `<name>.pem` in `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        issued = Issued(directory / f"{name}.pem", directory / f"{name}.key")
        _write_key(issued.key, key)
        issued.cert.write_bytes(self._issue(key.public_key(), common_name, server=server, alt_names=alt_names))
        return issued

    def server_cert(self, directory: Path) -> Issued:
        """The broker's certificate, valid for 127.0.0.1 and localhost."""
        return self.issue(directory, "server", "localhost", server=True, alt_names=("127.0.0.1", "localhost"))

    def write_crl(self, revoked_serials: list[int]) -> Path:
        """Write crl.pem listing `revoked_serials` (an empty list gives a valid, empty CRL)."""
        ca_cert, ca_key = self._load()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject).last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=30))
        )
        for serial in revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(ca_key, hashes.SHA256())
        tmp = self.crl_path.with_suffix(".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, self.crl_path)
        return self.crl_path

    def revoke(self, cert_pem: bytes) -> Path:
        """Add one certificate to the CRL, keeping the ones already revoked."""
        serial = x509.load_pem_x509_certificate(cert_pem).serial_number
        known: list[int] = []
        if self.crl_path.exists():
            known = [r.serial_number for r in x509.load_pem_x509_crl(self.crl_path.read_bytes())]
        return self.write_crl(sorted({*known, serial}))


def make_csr(key_path: Path, common_name: str) -> bytes:
    """A CSR for the key in `key_path` (what an agent sends at registration); creates the key if missing."""
    if key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(key_path, key)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def common_name(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
