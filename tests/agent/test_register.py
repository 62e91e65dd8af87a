"""First-boot registration against a local fake of POST /devices/{epn}/register (docs/api.md)."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.register import RegistrationError, register, stored_credentials


def _ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return key, cert


class FakeApi:
    def __init__(self, token: str = "secret", ca=None, mqtt: tuple[str, int] = ("broker.local", 8883)) -> None:
        self.token = token
        self.bodies: list[dict] = []
        ca_key, ca_cert = ca or _ca()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.bodies.append({"path": self.path, **body})
                if body.get("token") != api.token:
                    return self._answer(401, {"error": "Unauthorized", "message": "token is wrong or used"})
                csr = x509.load_pem_x509_csr(body["csr"].encode())
                now = dt.datetime.now(dt.UTC)
                cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
                        .public_key(csr.public_key()).serial_number(2).not_valid_before(now)
                        .not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
                pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
                self._answer(200, {"certificate": pem(cert), "ca": pem(ca_cert),
                                   "mqtt": {"host": mqtt[0], "port": mqtt[1]}, "topics": {}})

            def _answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def api():
    server = FakeApi()
    yield server
    server.close()


def test_register_stores_key_certificate_and_broker(tmp_path, api):
    assert stored_credentials(str(tmp_path)) is None
    creds = register(api.url, "secret", "dev-1", str(tmp_path), "1.0.0", {"demo": "1.0.0"})
    body = api.bodies[0]
    assert body["path"] == "/devices/dev-1/register" and body["apps"] == {"demo": "1.0.0"}
    csr = x509.load_pem_x509_csr(body["csr"].encode())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-1"
    assert (creds.host, creds.port) == ("broker.local", 8883)
    assert os.stat(creds.key).st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / "device.crt").read_bytes())
    key = serialization.load_pem_private_key((tmp_path / "tls" / "device.key").read_bytes(), None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert stored_credentials(str(tmp_path)) == creds
    assert all(b"secret" not in p.read_bytes() for p in (tmp_path / "tls").iterdir())


def test_wrong_token_is_a_clear_error(tmp_path, api):
    with pytest.raises(RegistrationError) as info:
        register(api.url, "wrong", "dev-1", str(tmp_path), "1.0.0", {})
    assert "401" in str(info.value) and "token is wrong" in str(info.value)
    assert stored_credentials(str(tmp_path)) is None


def test_unreachable_api_is_a_clear_error(tmp_path):
    with pytest.raises(RegistrationError) as info:
        register("http://127.0.0.1:9", "t", "dev-1", str(tmp_path), "1.0.0", {}, timeout=5)
    assert "failed" in str(info.value)


def test_a_retry_after_a_crash_before_the_certificate_was_stored_uses_the_same_key(tmp_path, api):
    register(api.url, "secret", "dev-1", str(tmp_path), "1.0.0", {})
    (tmp_path / "tls" / "device.crt").unlink()  # as if the agent died after the API answered
    assert stored_credentials(str(tmp_path)) is None
    register(api.url, "secret", "dev-1", str(tmp_path), "1.0.0", {})
    keys = [x509.load_pem_x509_csr(b["csr"].encode()).public_key().public_numbers() for b in api.bodies]
    assert len(keys) == 2 and keys[0] == keys[1]
