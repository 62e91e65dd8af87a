"""AWS SigV4 signing of the CLI's requests for an API deployed with IAM auth (`OTA_AUTH=iam`).

Credentials come from botocore's usual chain (environment, shared config and credentials files with
`--profile` / AWS_PROFILE, SSO, container and instance roles); the region from `--region`, the API
Gateway host name (`<id>.execute-api.<region>.amazonaws.com`), or the profile / AWS_REGION. The
signing itself is botocore's (SigV4Auth for the `execute-api` service): this module only adapts it to
`requests`. Does not: choose between token and SigV4 (cli.client.resolve does).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError
from botocore.session import Session

SERVICE = "execute-api"
_EXECUTE_API = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class SigningError(Exception):
    """No credentials or no region to sign with."""


def region_of_url(url: str) -> str | None:
    """The region in an API Gateway URL, or None for any other host."""
    match = _EXECUTE_API.match(urlsplit(url).hostname or "")
    return match.group(1) if match else None


def is_aws_api(url: str) -> bool:
    return region_of_url(url) is not None


class SigV4(requests.auth.AuthBase):
    """Signs each prepared request (method, URL with query, headers, body) just before it is sent."""

    def __init__(self, credentials: Credentials, region: str, service: str = SERVICE) -> None:
        self._credentials = credentials
        self.region = region
        self._service = service

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body if request.body is not None else b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            raise SigningError("only in-memory request bodies can be signed")
        signed = AWSRequest(method=request.method, url=request.url, data=body,
                            headers={k: v for k, v in request.headers.items() if k.lower() == "content-type"})
        frozen = self._credentials.get_frozen_credentials() if hasattr(self._credentials, "get_frozen_credentials") \
            else self._credentials
        SigV4Auth(frozen, self._service, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        return request


def from_chain(url: str, profile: str | None = None, region: str | None = None,
               session: Session | None = None) -> SigV4:
    """SigV4 auth from botocore's credential chain; SigningError names what is missing."""
    try:
        session = session or Session(profile=profile)
        credentials = session.get_credentials()
        configured = session.get_config_variable("region")
    except BotoCoreError as err:
        raise SigningError(f"AWS configuration: {err}") from err
    if credentials is None:
        where = f"profile {profile!r}" if profile else "the environment, ~/.aws or an instance role"
        raise SigningError(f"no AWS credentials found in {where}; run 'aws configure' or pass --profile")
    chosen = region or region_of_url(url) or configured
    if not chosen:
        raise SigningError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    return SigV4(credentials, chosen)
