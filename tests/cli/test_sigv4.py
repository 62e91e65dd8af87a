"""`ota` signs requests for an API with IAM auth with SigV4: the fake API recomputes each signature from
what arrived on the wire with botocore's own SigV4 primitives (canonical request, string to sign,
signature) and the same credentials, so a request signed for other bytes, another path or query, or
another host fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import Session

from cli import sigv4
from cli.client import ApiClient, Target, UsageError, resolve, with_auth
from cli.commands import Output
from cli.main import main

from .conftest import FakeApi, Seen

CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-1")
REGION = "eu-west-1"
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/execute-api/aws4_request, "
                   r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$")


def verify(url: str, seen: Seen, credentials: Credentials = CREDS) -> bool:
    """What an SigV4 verifier does: rebuild the canonical request from the received request and compare."""
    match = _AUTH.match(seen.headers.get("Authorization", ""))
    if match is None:
        return False
    key_id, _day, region, signed_headers, signature = match.groups()
    headers = {name: seen.headers[next(h for h in seen.headers if h.lower() == name)]
               for name in signed_headers.split(";") if name != "host"}
    request = AWSRequest(method=seen.method, url=url + seen.path, data=seen.body, headers=headers)
    request.context["timestamp"] = seen.headers["X-Amz-Date"]
    auth = SigV4Auth(credentials, "execute-api", region)
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    return key_id == credentials.access_key and auth.signature(string_to_sign, request) == signature


@pytest.mark.parametrize(("method", "path", "body", "params"), [
    ("GET", "/jobs", None, None),
    ("GET", "/packages", None, {"app": "demo", "state": "AVAILABLE"}),
    ("POST", "/jobs", {"package_id": "up-1", "targets": {"model": "m1"}}, None),
    ("DELETE", "/devices/dev-1", None, None),
])
def test_signed_requests_verify_on_the_server(fake_api: FakeApi, method: str, path: str, body: object,
                                              params: dict[str, str] | None) -> None:
    fake_api.routes[(method, path + ("?app=demo&state=AVAILABLE" if params else ""))] = (200, {})
    client = ApiClient(Target(fake_api.url, "never-sent", signer=sigv4.SigV4(CREDS, REGION)))
    client.request(method, path, body=body, params=params)
    seen = fake_api.seen[-1]
    assert verify(fake_api.url, seen)
    assert seen.headers["X-Amz-Security-Token"] == "session-token-1"
    assert "Bearer" not in seen.headers["Authorization"]


@pytest.mark.parametrize("tamper", ["body", "path", "credentials"])
def test_the_verifier_refuses_what_was_not_signed(fake_api: FakeApi, tamper: str) -> None:
    fake_api.routes[("POST", "/jobs")] = (200, {})
    ApiClient(Target(fake_api.url, None, signer=sigv4.SigV4(CREDS, REGION))).request("POST", "/jobs", body={"a": 1})
    seen = fake_api.seen[-1]
    if tamper == "body":
        seen.body = b'{"a": 2}'
    elif tamper == "path":
        seen.path = "/jobs/other"
    other = Credentials("AKIDEXAMPLE", "another-secret") if tamper == "credentials" else CREDS
    assert not verify(fake_api.url, seen, other)


@pytest.mark.parametrize(("url", "region"), [
    ("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/api", "eu-west-1"),
    ("https://a1b2c3d4e5.execute-api.cn-north-1.amazonaws.com.cn/api", "cn-north-1"),
    ("http://127.0.0.1:8000", None),
    ("https://api.example.com", None),
])
def test_region_comes_from_an_api_gateway_url(url: str, region: str | None) -> None:
    assert sigv4.region_of_url(url) == region


def test_auto_signs_an_api_gateway_url_without_a_token_and_keeps_the_token_elsewhere() -> None:
    session = Session()
    session.set_credentials(CREDS.access_key, CREDS.secret_key)
    aws = Target("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/api", None)
    chosen = sigv4.from_chain(aws.api, session=session)
    assert chosen.region == "eu-west-1"
    local = Target("http://127.0.0.1:8000", "t")
    assert with_auth(local, "auto") is local
    assert with_auth(Target(aws.api, "t"), "auto").signer is None  # an explicit token wins


def test_missing_credentials_or_region_is_one_line(tmp_path: Path) -> None:
    empty = Session(session_vars={"region": (None, None, None, None)})  # no region from env or files
    empty.set_credentials("AKID", "secret")
    with pytest.raises(sigv4.SigningError, match="no AWS region"):
        sigv4.from_chain("https://api.example.com", session=empty)
    with pytest.raises(UsageError, match="--auth must be one of"):
        with_auth(resolve("http://x", "t", tmp_path, environ={}), "kerberos")


def test_cli_sigv4_with_no_credentials_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    code = main(["--api", "https://a1.execute-api.eu-west-1.amazonaws.com/api", "--auth", "sigv4",
                 "--profile", "absent-profile", "jobs", "list"], Output(), environ=environ)
    assert code == 2 and capsys.readouterr().err.startswith("error: ")
