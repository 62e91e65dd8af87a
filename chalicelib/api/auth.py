"""Operator authentication. With OTA_AUTH=iam (AWS) routes use API Gateway's IAM authorizer; otherwise
a Chalice built-in authorizer checks `Authorization: Bearer <token>` against OTA_OPERATOR_TOKEN_SHA256
(constant-time). The mode is read when the module is imported (chalice package/deploy imports the app
with the stage's environment); anything but "iam" means the token check, which fails closed.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from chalice import AuthResponse, Blueprint, IAMAuthorizer
from chalice.app import AuthRequest

from .. import bootstrap

bp = Blueprint(__name__)


@bp.authorizer()
def operator_token(auth_request: AuthRequest) -> AuthResponse:
    """Allow everything for a valid operator bearer token; deny otherwise (403; 401 without the header)."""
    token = auth_request.token or ""
    scheme, _, secret = token.partition(" ")
    try:
        expected = bootstrap.get().settings.operator_token_sha256
    except Exception:
        expected = None
    if scheme.lower() == "bearer" and secret and expected:
        digest = hashlib.sha256(secret.strip().encode()).hexdigest()
        if hmac.compare_digest(digest, expected):
            return AuthResponse(routes=["*"], principal_id="operator")
    return AuthResponse(routes=[], principal_id="anonymous")


OPERATOR = IAMAuthorizer() if os.environ.get("OTA_AUTH") == "iam" else operator_token
