"""The agent says why it cannot connect (issue 11): against a real mosquitto with TLS client
certificates, a revoked certificate, a certificate of another CA and a broker certificate that does
not verify each give their own sentence, logged once, not "Unspecified error" forever."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from agent.connect_errors import explain, explain_log
from agent.mqtt_transport import MqttTransport

from .test_e2e_tls import TlsBroker, _issue
from .test_register import _ca

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.mark.parametrize(("err", "said"), [
    (ConnectionRefusedError(111, "Connection refused"), "nothing accepts connections at h:1"),
    (socket.gaierror(-2, "Name or service not known"), "cannot be resolved"),
    (TimeoutError("timed out"), "timed out"),
    (ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca"), "does not know the CA"),
    (ssl.SSLError(1, "[SSL: SSLV3_ALERT_CERTIFICATE_REVOKED] sslv3 alert certificate revoked"), "it is revoked"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "does not speak TLS"),
])
def test_each_connect_error_has_its_sentence(err: BaseException, said: str) -> None:
    assert said in explain(err, "h", 1)


def test_a_tls_alert_in_pahos_log_is_recognised_and_other_lines_are_not() -> None:
    assert "revoked" in (explain_log("failed to receive on socket: [SSL: SSLV3_ALERT_CERTIFICATE_REVOKED] "
                                     "sslv3 alert certificate revoked (_ssl.c:2580)") or "")
    assert explain_log("failed to receive on socket: [Errno 104] Connection reset by peer") is None


def _crl(ca, revoked_cert: Path, directory: Path) -> Path:
    ca_key, ca_cert = ca
    cert = x509.load_pem_x509_certificate(revoked_cert.read_bytes())
    now = dt.datetime.now(dt.UTC)
    entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(now).build()
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject).last_update(now)
           .next_update(now + dt.timedelta(days=1)).add_revoked_certificate(entry).sign(ca_key, hashes.SHA256()))
    path = directory / "crl.pem"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def tls_setup(tmp_path):
    ca, other = _ca(), _ca()
    d = tmp_path / "pki"
    d.mkdir()
    (d / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    (d / "other-ca.pem").write_bytes(other[1].public_bytes(serialization.Encoding.PEM))
    _issue(ca, "localhost", d, "server", server=True)
    _issue(ca, "dev-good", d, "good")
    _issue(ca, "dev-revoked", d, "revoked")
    _issue(other, "dev-foreign", d, "foreign")
    broker = TlsBroker(str(d))
    with open(broker.conf, "a") as f:
        f.write(f"crlfile {_crl(ca, d / 'revoked.crt', d)}\n")
    broker.start()
    yield d, broker
    broker.stop()


@pytest.mark.parametrize(("cert", "ca_file", "said"), [
    ("revoked", "ca.pem", "it is revoked"),
    ("foreign", "ca.pem", "could not verify this device's certificate"),  # a CA of the same name: decrypt error
    ("good", "other-ca.pem", "does not verify against tls.ca"),
])
def test_the_agent_says_why_the_broker_refuses_it(tls_setup, caplog: pytest.LogCaptureFixture, cert: str,
                                                  ca_file: str, said: str) -> None:
    d, broker = tls_setup
    transport = MqttTransport(f"dev-{cert}", "127.0.0.1", broker.port, ca=str(d / ca_file),
                              cert=str(d / f"{cert}.crt"), key=str(d / f"{cert}.key"))
    with caplog.at_level(logging.DEBUG, logger="ota-agent"):
        transport.start(lambda event: None)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and sum(said in r.message for r in caplog.records) < 2:
                time.sleep(0.05)  # wait for a second attempt: the reason must not be logged twice at WARNING
        finally:
            transport.stop()
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING and said in r.message]
    assert len(warnings) == 1, [r.message for r in caplog.records][-6:]
    assert any(said in r.message and r.levelno == logging.DEBUG for r in caplog.records)
    assert not transport.connected


def test_a_good_certificate_connects(tls_setup) -> None:
    d, broker = tls_setup
    transport = MqttTransport("dev-good", "127.0.0.1", broker.port, ca=str(d / "ca.pem"),
                              cert=str(d / "good.crt"), key=str(d / "good.key"))
    transport.start(lambda event: None)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not transport.connected:
            time.sleep(0.05)
        assert transport.connected
    finally:
        transport.stop()
