"""First boot end to end: register over HTTP (fake API, real CSR), then mTLS to mosquitto and install."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import Broker
from .pkgtools import build_package, job_for
from .sender import Sender
from .test_register import FakeApi, _ca

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


def _issue(ca, cn: str, directory: Path, name: str, server: bool = False) -> None:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1)))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class TlsBroker(Broker):
    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        with open(self.conf, "a") as f:
            f.write(f"cafile {directory}/ca.pem\ncertfile {directory}/server.crt\nkeyfile {directory}/server.key\n"
                    "require_certificate true\nuse_identity_as_username true\n")


@pytest.fixture
def pki(tmp_path):
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = _ca()
    (directory / "ca.pem").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    _issue(ca, "localhost", directory, "server", server=True)
    _issue(ca, "cloud", directory, "cloud")
    return ca, directory


def test_register_then_mtls_install(tmp_path, pki, publisher):
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        pytest.skip("mosquitto is not installed")
    ca, directory = pki
    broker = TlsBroker(str(directory))
    broker.start()
    api = FakeApi(token="first-boot", ca=ca, mqtt=("127.0.0.1", broker.port))
    sender = Sender.__new__(Sender)
    proc = None
    try:
        (tmp_path / "publisher.pub").write_bytes(publisher[1])
        config = tmp_path / "agent.toml"
        config.write_text(
            'epn = "dev-1"\nmodel = "m1"\ndata_dir = "data"\ninstall_root = "root"\n'
            f'[registration]\napi_url = "{api.url}"\ntoken = "first-boot"\n'
            '[trust]\npublisher_keys = ["publisher.pub"]\n')
        context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
        context.load_cert_chain(str(directory / "cloud.crt"), str(directory / "cloud.key"))
        sender.__init__(broker.port, tls=context)
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config)], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=open(tmp_path / "agent.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        package, envelope = build_package(publisher[0])
        job = job_for(package, envelope, block_size=1024)
        result = sender.serve(job, package, timeout=120)
        log = (tmp_path / "agent.log").read_text()
        assert result.terminal(job.execution_id) == ["SUCCEEDED"], log[-3000:]
        assert api.bodies and api.bodies[0]["path"] == "/devices/dev-1/register"
        assert (tmp_path / "data" / "tls" / "device.crt").exists()
        assert os.readlink(tmp_path / "root" / "demo" / "current") == "1.0.0"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if hasattr(sender, "client"):
            sender.close()
        api.close()
        broker.stop()
        time.sleep(0)
