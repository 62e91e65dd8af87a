"""With the `iot` signer the CA handed to devices is required and must be a real PEM certificate: the
service fails at start with a clear message instead of answering registrations with `ca: ""`."""

from __future__ import annotations

import pytest

from chalicelib import bootstrap
from chalicelib.settings import Settings, SettingsError


def test_iot_signer_without_a_ca_fails_naming_the_variable(env):
    without = {k: v for k, v in env.items() if k != "OTA_MQTT_CA"}
    with pytest.raises(SettingsError, match=r"OTA_MQTT_CA is missing .*OTA_SIGNER=iot"):
        Settings.from_env(without)


def test_local_ca_signer_does_not_need_it(env, tmp_path):
    settings = Settings.from_env({**{k: v for k, v in env.items() if k != "OTA_MQTT_CA"},
                                  "OTA_SIGNER": "local-ca", "OTA_LOCAL_CA_DIR": str(tmp_path)})
    assert settings.mqtt_ca is None


@pytest.mark.parametrize("content", [None, "", "not a certificate\n"])
def test_an_unreadable_or_empty_ca_file_fails_at_start(env, tmp_path, content):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    import boto3

    settings = Settings.from_env({**env, "OTA_MQTT_CA": str(path)})
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with pytest.raises(SettingsError, match="OTA_MQTT_CA"):
        bootstrap.build(settings, session)


def test_a_relative_ca_path_is_the_bundled_file(tmp_path, monkeypatch):
    """On Lambda the bundle's root holds AmazonRootCA1.pem (vendor/ in a checkout, after `make package`)."""
    from infra.package import amazon_root_ca

    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "AmazonRootCA1.pem").write_text(amazon_root_ca())
    monkeypatch.setattr(bootstrap, "BUNDLE_ROOT", tmp_path)
    assert bootstrap.read_ca("AmazonRootCA1.pem") == amazon_root_ca()
    (tmp_path / "AmazonRootCA1.pem").write_text(amazon_root_ca())  # the bundle's root wins
    assert bootstrap.read_ca("AmazonRootCA1.pem").startswith("-----BEGIN CERTIFICATE-----")


def test_registration_answers_the_configured_ca(world):
    """The functional stack's iot signer stand-in aside, the real IotSigner hands out the file's text."""
    from chalicelib.adapters.certificates import IotSigner

    signer = bootstrap.build(world.settings, world.session).signer
    assert isinstance(signer, IotSigner)
    from pathlib import Path

    assert signer.ca_pem() == Path(world.settings.mqtt_ca or "").read_text(encoding="ascii") != ""
