"""OpenAPI 3 document of the HTTP API, generated from the Chalice routes plus the examples below.

Run `python -m chalicelib.api.openapi > docs/openapi.json` (a test checks the committed file is current).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from . import schemas

# Real (public) values, so every example is a request the server accepts as well formed.
EXAMPLE_PUBLIC_KEY = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXh7x2iyxlLPezd/A8McBSvANk8x5\n"
                      "7CjXwbXNM35F+CwJLsvenreUrMVDgJJm8zPsYktK2bzsnRrUHMIZ4slHrg==\n-----END PUBLIC KEY-----\n")
EXAMPLE_CSR = ("-----BEGIN CERTIFICATE REQUEST-----\nMIHPMHYCAQAwFDESMBAGA1UEAwwJcHVtcC0wMDQyMFkwEwYHKoZIzj0CAQYIKoZI\n"
               "zj0DAQcDQgAEXh7x2iyxlLPezd/A8McBSvANk8x57CjXwbXNM35F+CwJLsvenreU\n"
               "rMVDgJJm8zPsYktK2bzsnRrUHMIZ4slHrqAAMAoGCCqGSM49BAMCA0kAMEYCIQCg\n"
               "krdxJ2T0+8QVkMi7KURAsBdflSWrlCPGOz4lkgextgIhAIIEWZGIK5yUn+yzUmCE\n"
               "/BnfiN6C11fSEZk8oiV/ODRq\n-----END CERTIFICATE REQUEST-----\n")
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/devices"): {"epn": "pump-0042", "model": "model-a"},
    ("POST", "/devices/{epn}/register"): {"token": "<registration token>",
                                         "csr": EXAMPLE_CSR,
                                         "agent_version": "1.0.0", "apps": {"demo": "1.0.0"}},
    ("POST", "/keys"): {"public_key": EXAMPLE_PUBLIC_KEY, "name": "release-2026"},
    ("POST", "/packages"): {"size": 1048576},
    ("POST", "/jobs"): {"package_id": "up-0123456789abcdef0123", "targets": {"devices": ["pump-0042"]},
                        "mode": "block", "block_size": 32768, "window": 64,
                        "timeouts": {"stall_seconds": 300, "total_seconds": 604800}, "max_retries": 2,
                        "abort": {"failure_threshold_percent": 20, "min_executed": 10}},
}
REQUESTS[("POST", "/commands")] = {"envelope": {
    "command": {"id": "cmd-0123456789abcdef", "type": "run-script", "target": {"model": "model-a"}, "args": {},
                "script": "uptime", "timeout": 60, "issued": "2026-11-30T12:00:00Z", "expires": "2026-11-30T13:00:00Z"},
    "signatures": [{"alg": "ecdsa-p256-sha256", "keyid": "0123456789abcdef", "sig": "<base64 signature>"}]}}
REQUESTS[("POST", "/releases")] = {"app": "demo", "version": "1.0.5", "model": "model-a", "channel": "stable"}
SUCCESS = {("POST", "/commands"): "201", ("POST", "/releases"): "201",
           ("POST", "/devices"): "201", ("POST", "/keys"): "201", ("POST", "/packages"): "201",
           ("POST", "/jobs"): "201"}
ERRORS = {"400": "invalid input (the message names the field)", "401": "missing or wrong credential",
          "403": "credential not allowed", "404": "not found", "409": "conflicts with the current state"}


def build() -> dict[str, Any]:
    import app as application

    paths: dict[str, Any] = {}
    for path, methods in sorted(application.app.routes.items()):
        for method, entry in sorted(methods.items()):
            doc = (entry.view_function.__doc__ or entry.view_name).strip().splitlines()[0]
            operator = entry.authorizer is not None
            operation: dict[str, Any] = {
                "operationId": entry.view_name,
                "summary": doc,
                "parameters": [{"name": p, "in": "path", "required": True, "schema": schemas.PATH[p]}
                               for p in re.findall(r"{(\w+)}", path)]
                + [{"name": name, "in": "query", "required": False, "schema": schema}
                   for name, schema in schemas.QUERY.get((method, path), {}).items()],
                "responses": {SUCCESS.get((method, path), "200"): {"description": "success",
                                                                   "content": {"application/json": {}}}},
            }
            if operator:
                operation["security"] = [{"operatorToken": []}, {"sigv4": []}]
            for code, text in ERRORS.items():
                operation["responses"][code] = {"description": text, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            body_schema = schemas.BODIES.get((method, path))
            if body_schema is not None:
                operation["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": body_schema, "example": REQUESTS[(method, path)]}}}
            if (method, path) == ("POST", "/jobs"):
                key = {"type": "string", "pattern": schemas.IDEMPOTENCY_KEY_PATTERN}
                operation["parameters"].append({"name": "Idempotency-Key", "in": "header", "required": False,
                                                "schema": key})
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "OTA update service", "version": "1", "description": "See docs/api.md."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "operatorToken": {"type": "http", "scheme": "bearer", "description": "local stack (OTA_AUTH=token)"},
                "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "AWS SigV4 (OTA_AUTH=iam)"},
            },
            "schemas": {"Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}},
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
