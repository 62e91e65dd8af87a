"""docs/openapi.json is generated from the routes and must be current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.api import openapi

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_is_current():
    assert DOC.read_text() == openapi.render(), "run: python -m chalicelib.api.openapi > docs/openapi.json"


def test_every_route_is_documented_in_api_md():
    api_md = (DOC.parent / "api.md").read_text()
    for path, methods in json.loads(openapi.render())["paths"].items():
        for method in methods:
            assert f"| {method.upper()} | {path} |" in api_md, (method, path)


def test_every_body_example_matches_its_schema_and_every_id_is_described():
    import jsonschema

    from chalicelib.api import schemas

    document = json.loads(openapi.render())
    bodies = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for parameter in operation["parameters"]:
                assert parameter["schema"].get("pattern") or parameter["schema"].get("maxLength") \
                    or parameter["schema"].get("enum"), (method, path, parameter["name"])
            body = operation.get("requestBody")
            if body is None:
                continue
            content = body["content"]["application/json"]
            jsonschema.validate(content["example"], content["schema"])
            assert content["schema"] == schemas.BODIES[(method.upper(), path)]
            bodies += 1
    assert bodies == len(schemas.BODIES)


@pytest.mark.parametrize(("route", "body"), [
    (("POST", "/devices"), {"epn": "a/b", "model": "m"}),
    (("POST", "/devices"), {"epn": "a", "model": "m", "extra": 1}),
    (("POST", "/keys"), {"public_key": "k", "name": ""}),
    (("POST", "/packages"), {"size": 0}),
    (("POST", "/jobs"), {"package_id": "up-1", "targets": {"devices": [], "model": "m"}}),
    (("POST", "/jobs"), {"package_id": "up-1", "targets": {"model": "m"}, "window": 101}),
    (("POST", "/devices/{epn}/register"), {"token": "t", "csr": "c", "agent_version": "01.0.0"}),
])
def test_schemas_refuse_what_the_server_refuses(route, body):
    import jsonschema

    from chalicelib.api import schemas

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, schemas.BODIES[route])
