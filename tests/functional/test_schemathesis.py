"""Schema-driven fuzzing (schemathesis, when installed) of docs/openapi.json through the chalice test
client: generated paths, queries, headers and bodies for every operation; never a 5xx."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(str(ROOT / "docs" / "openapi.json"))


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
    if answer.status_code >= 400:
        assert answer.json.get("message"), answer.body[:300]
