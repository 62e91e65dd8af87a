"""CORS for the web console on another origin (chalicelib/api/cors.py): off unless OTA_CONSOLE_ORIGIN
names one origin; then every route answers that origin's preflight without auth and says the origin on
its answers, while auth still decides the request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.api.cors import console_cors

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json
from chalice.deploy.swagger import CFNSwaggerGenerator
from chalice.test import Client
import app
routes = {f"{m} {p}": (e.cors.allow_origin if e.cors else None)
          for p, ms in app.app.routes.items() for m, e in ms.items()}
swagger = CFNSwaggerGenerator().generate_swagger(app.app)  # what API Gateway is given
options = swagger["paths"]["/jobs"].get("options")
with Client(app.app) as client:
    denied = client.http.get("/jobs", headers={"Origin": "https://console.example.com"})
print(json.dumps({"routes": routes, "preflight": options, "denied": [denied.status_code, dict(denied.headers)]}))
"""


def _probe(origin: str | None) -> dict:
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "OTA_AUTH": "token",
           "OTA_OPERATOR_TOKEN_SHA256": "0" * 64}
    if origin is not None:
        env["OTA_CONSOLE_ORIGIN"] = origin
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_cors_unless_a_console_origin_is_configured() -> None:
    assert console_cors({}) is None
    seen = _probe(None)
    assert set(seen["routes"].values()) == {None} and seen["preflight"] is None
    assert "access-control-allow-origin" not in {k.lower() for k in seen["denied"][1]}


def test_the_console_origin_gets_preflights_and_cors_headers_and_auth_still_decides() -> None:
    seen = _probe("https://console.example.com")
    assert set(seen["routes"].values()) == {"https://console.example.com"}
    preflight = seen["preflight"]  # API Gateway answers it itself (mock integration), before any authorizer
    assert preflight is not None and "security" not in preflight
    integration = preflight["x-amazon-apigateway-integration"]
    assert integration["type"] == "mock"
    answer = integration["responses"]["default"]["responseParameters"]
    assert answer["method.response.header.Access-Control-Allow-Origin"] == "'https://console.example.com'"
    allowed = answer["method.response.header.Access-Control-Allow-Headers"].strip("'").split(",")
    assert {"Authorization", "X-Amz-Date", "X-Amz-Security-Token", "Idempotency-Key"} <= set(allowed)
    assert seen["denied"][0] == 401  # no credential: refused as before


@pytest.mark.parametrize("origin", ["*", "https://a.example, https://b.example", "console.example.com",
                                    "https://console.example.com/path"])
def test_only_one_plain_origin_is_accepted(origin: str) -> None:
    with pytest.raises(ValueError, match="OTA_CONSOLE_ORIGIN"):
        console_cors({"OTA_CONSOLE_ORIGIN": origin})
