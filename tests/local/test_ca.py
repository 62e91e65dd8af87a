"""The local CA: chains verify, the CN is the one the CA chose, keys are private, the CRL lists revocations."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from local.ca import LocalCA, common_name, make_csr


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize("epn", ["dev-1", "A_b-9", "x" * 64])
def test_device_certificate_chains_to_the_ca_with_cn_epn(ca: LocalCA, tmp_path: Path, epn: str) -> None:
    issued = ca.issue(tmp_path / "d", "dev", epn)
    cert = _cert(issued.cert)
    cert.verify_directly_issued_by(_cert(ca.cert_path))
    assert common_name(issued.cert.read_bytes()) == epn
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_foreign_ca_does_not_verify_our_certificates(ca: LocalCA, tmp_path: Path) -> None:
    foreign = LocalCA.create_or_load(tmp_path / "foreign")
    issued = foreign.issue(tmp_path / "d", "dev", "dev-1")
    with pytest.raises((ValueError, InvalidSignature)):
        _cert(issued.cert).verify_directly_issued_by(_cert(ca.cert_path))


@pytest.mark.parametrize(("asked", "given"), [("dev-1", "dev-1"), ("ota.cloud.api", "dev-2"), ("evil/#", "dev-3")])
def test_signing_a_csr_keeps_its_key_but_sets_the_cn(ca: LocalCA, tmp_path: Path, asked: str, given: str) -> None:
    csr_pem = make_csr(tmp_path / "dev.key", asked)
    cert_pem = ca.sign_csr(csr_pem, given)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert common_name(cert_pem) == given
    assert cert.public_key() == x509.load_pem_x509_csr(csr_pem).public_key()
    cert.verify_directly_issued_by(_cert(ca.cert_path))


def test_server_certificate_names_loopback(ca: LocalCA, tmp_path: Path) -> None:
    san = _cert(ca.server_cert(tmp_path).cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


def test_keys_are_private_files(ca: LocalCA, tmp_path: Path) -> None:
    issued = ca.issue(tmp_path / "d", "dev", "dev-1")
    for key in (ca.key_path, issued.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_loading_again_keeps_the_same_ca(ca: LocalCA) -> None:
    before = ca.cert_path.read_bytes()
    assert LocalCA.create_or_load(ca.directory).cert_path.read_bytes() == before


def test_crl_starts_empty_and_lists_each_revoked_serial_once(ca: LocalCA, tmp_path: Path) -> None:
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert list(crl) == []
    first, second = (ca.issue(tmp_path, n, n) for n in ("d1", "d2"))
    for cert in (first, second, first):
        ca.revoke(cert.cert.read_bytes())
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.is_signature_valid(_cert(ca.cert_path).public_key())
    assert sorted(r.serial_number for r in crl) == sorted(_cert(c.cert).serial_number for c in (first, second))


def test_a_csr_with_a_bad_signature_is_refused(ca: LocalCA, tmp_path: Path) -> None:
    pem = make_csr(tmp_path / "k.key", "dev-1")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(Encoding.DER))
    der[-3] ^= 0x01
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(Encoding.PEM)
    with pytest.raises(ValueError, match="signature"):
        ca.sign_csr(tampered, "dev-1")
