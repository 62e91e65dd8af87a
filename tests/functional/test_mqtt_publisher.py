"""The mqtt publisher adapter against a real mosquitto with mTLS: QoS 1, TCP_NODELAY, lazy connect."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chalicelib.adapters.publisher import MqttPublisher

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(not shutil.which("mosquitto") and not shutil.which(MOSQUITTO),
                                reason="mosquitto is not installed")


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, key, cert):
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.with_suffix(".key").write_bytes(pem)
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def pki(tmp_path):
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    _write(tmp_path / "ca", ca_key, ca)
    for cn, server in (("localhost", True), ("ota-cloud", False), ("dev-1", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=2)))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        _write(tmp_path / cn, key, builder.sign(ca_key, hashes.SHA256()))
    return tmp_path


def _user():
    """Started as root, mosquitto would switch to 'mosquitto' and fail to read the test's keys."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "root"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(pki):
    port = _free_port()
    conf = pki / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\nrequire_certificate true\nuse_identity_as_username true\n"
        f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'localhost.pem'}\nkeyfile {pki / 'localhost.key'}\n"
        f"set_tcp_nodelay true\npersistence false\nuser {_user()}\n")
    proc = subprocess.Popen([shutil.which("mosquitto") or MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {proc.stderr.read().decode()[:500]}")
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(30)


def test_publishes_qos1_over_mtls_with_nodelay(pki, broker):
    import paho.mqtt.client as mqtt

    received, subscribed, done = [], threading.Event(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-1")
    sub.tls_set(ca_certs=str(pki / "ca.pem"), certfile=str(pki / "dev-1.pem"), keyfile=str(pki / "dev-1.key"))
    sub.on_connect = lambda c, *_: c.subscribe("ota/dev-1/#", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c, _u, message):
        received.append((message.topic, message.payload, message.qos))
        if len(received) == 150:
            done.set()

    sub.on_message = on_message
    sub.connect("127.0.0.1", broker)
    sub.loop_start()
    try:
        assert subscribed.wait(60)
        publisher = MqttPublisher("127.0.0.1", broker, str(pki / "ota-cloud.pem"), str(pki / "ota-cloud.key"),
                                  str(pki / "ca.pem"))
        for n in range(150):
            publisher.publish("ota/dev-1/blk", n.to_bytes(4, "big") * 64)
        publisher.flush()
        assert done.wait(60)
        assert [p for _, p, _ in received] == [n.to_bytes(4, "big") * 64 for n in range(150)]
        assert {q for _, _, q in received} == {1}
        raw = publisher._client.socket()
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sub.loop_stop()
        sub.disconnect()
