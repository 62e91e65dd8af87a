"""Settings parsing (fail fast, every problem at once), idempotent provisioning, the local CA signer."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import unquote_plus

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws

from chalicelib.adapters.certificates import LocalCaSigner
from chalicelib.adapters.provision import ensure_resources, ensure_table
from chalicelib.domain.errors import InvalidInput
from chalicelib.settings import Settings, SettingsError

from .fakes import make_csr


def test_settings_from_env(env):
    settings = Settings.from_env(env)
    assert settings.table_name == "ota-test" and settings.mqtt_port == 8883 and settings.auth == "token"
    assert settings.iot_policy_name == "ota-device" and settings.staging_dlq == "ota-staging-dlq"


def test_missing_settings_are_listed_together():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({})
    message = str(caught.value)
    for name in ("OTA_TABLE_NAME", "OTA_STAGING_BUCKET", "OTA_REPOSITORY_BUCKET", "OTA_STAGING_QUEUE",
                 "OTA_DEVICE_QUEUE", "OTA_PUBLISHER", "OTA_SIGNER", "OTA_AUTH", "OTA_MQTT_HOST", "OTA_MQTT_PORT"):
        assert name in message


@pytest.mark.parametrize(("changes", "named"), [
    ({"OTA_PUBLISHER": "pigeon"}, "OTA_PUBLISHER"),
    ({"OTA_MQTT_PORT": "99999"}, "OTA_MQTT_PORT"),
    ({"OTA_MQTT_PORT": "x"}, "OTA_MQTT_PORT"),
    ({"OTA_OPERATOR_TOKEN_SHA256": ""}, "OTA_OPERATOR_TOKEN_SHA256"),
    ({"OTA_OPERATOR_TOKEN_SHA256": "abc"}, "OTA_OPERATOR_TOKEN_SHA256"),
    ({"OTA_SIGNER": "local-ca"}, "OTA_LOCAL_CA_DIR"),
    ({"OTA_PUBLISHER": "mqtt"}, "OTA_MQTT_CLIENT_CERT"),
    ({"OTA_MAX_PACKAGE_BYTES": "0"}, "OTA_MAX_PACKAGE_BYTES"),
])
def test_invalid_settings_name_the_variable(env, changes, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env({**env, **changes})


def test_provisioning_is_idempotent_and_wires_dlqs_and_notification(env):
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        settings = Settings.from_env(env)
        first = ensure_resources(settings, session)
        assert ensure_resources(settings, session) == first
        sqs = session.client("sqs")
        for queue in ("staging", "device"):
            attributes = sqs.get_queue_attributes(QueueUrl=first[f"{queue}_queue_url"],
                                                  AttributeNames=["RedrivePolicy"])["Attributes"]
            redrive = json.loads(attributes["RedrivePolicy"])
            assert int(redrive["maxReceiveCount"]) == 3 and redrive["deadLetterTargetArn"].endswith("-dlq")
        table = session.client("dynamodb").describe_table(TableName="ota-test")["Table"]
        assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"gsi1", "gsi2", "gsi3"}
        s3 = session.client("s3")
        s3.put_object(Bucket="ota-staging", Key="uploads/up-1", Body=b"x")
        bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=first["staging_queue_url"],
                                                          MaxNumberOfMessages=10)["Messages"]]
        keys = [unquote_plus(r["s3"]["object"]["key"]) for b in bodies for r in json.loads(b).get("Records", [])]
        assert keys == ["uploads/up-1"]


def test_a_table_of_an_older_layout_gains_the_missing_index():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        client.create_table(
            TableName="old", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gsi1pk", "gsi1sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{"IndexName": "gsi1", "Projection": {"ProjectionType": "ALL"}, "KeySchema": [
                {"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}])
        ensure_table(client, "old")
        table = client.describe_table(TableName="old")["Table"]
        assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"gsi1", "gsi2", "gsi3"}


@pytest.fixture
def ca_dir(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return tmp_path


def test_local_ca_signs_with_epn_as_cn_and_writes_a_crl_on_revoke(ca_dir):
    signer = LocalCaSigner(str(ca_dir))
    issued = signer.sign("dev-7", make_csr("ignored-cn"))
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-7"
    cert.verify_directly_issued_by(ca)
    assert not (ca_dir / "crl.pem").exists()
    signer.revoke(issued.certificate_pem)
    signer.revoke(issued.certificate_pem)
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())
    assert [r.serial_number for r in crl] == [cert.serial_number]


def test_local_ca_refuses_a_bad_csr(ca_dir):
    with pytest.raises(InvalidInput, match="csr"):
        LocalCaSigner(str(ca_dir)).sign("dev-7", "not a csr")
