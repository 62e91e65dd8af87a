"""Schema-driven fuzzing (schemathesis, when installed) of docs/openapi.json through the chalice test
client: generated paths, queries, headers and bodies for every operation; never a 5xx, and a request
that matches the schema (positive mode) is never refused as malformed (schemathesis'
positive_data_acceptance rule: 400/422 are failures; 401/403/404/409 are answers about state)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from chalicelib.settings import DEFAULT_MAX_PACKAGE_BYTES

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

ROOT = Path(__file__).resolve().parents[2]


def _public_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _csr_pem(key: ec.EllipticCurvePrivateKey) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
schemathesis.openapi.format("pem-public-key", st.sampled_from([_public_key_pem(k) for k in KEYS]))
schemathesis.openapi.format("pem-csr", st.sampled_from([_csr_pem(k) for k in KEYS]))
schemathesis.openapi.format("page-cursor", st.text(min_size=1, max_size=64))
schema = schemathesis.openapi.from_path(str(ROOT / "docs" / "openapi.json"))


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """The schema states the default package-size limit; this deployment keeps it."""
    return {**env, "OTA_MAX_PACKAGE_BYTES": str(DEFAULT_MAX_PACKAGE_BYTES)}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_answers_5xx(api, case):
    if case.method.upper() != case.operation.method.upper():
        return  # methods the API does not declare get API Gateway's / Chalice's own 405
    path = case.formatted_path
    if case.query:
        path += "?" + urlencode({k: str(v) for k, v in case.query.items()})
    headers = {k: str(v) for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    body = case.body
    if isinstance(body, bytes):
        raw = body
    elif body is None or type(body).__name__ == "NotSet":
        raw = b""
    else:
        raw = json.dumps(body).encode()
    answer = api.call(case.method, path, raw=raw, headers=headers)
    assert answer.status_code < 500, (case.method, path, case.body, answer.body[:300])
    made_up_cursor = "cursor" in (case.query or {})  # format page-cursor: only the listing's own are valid
    if case.meta is not None and case.meta.generation.mode.is_positive and not made_up_cursor:
        assert answer.status_code not in (400, 422), ("valid data refused", case.method, path, case.query,
                                                      case.body, answer.body[:300])
    if answer.status_code >= 400:
        assert answer.json.get("message"), answer.body[:300]
