"""docs/openapi.json is generated from the routes and must be current."""

from __future__ import annotations

import json
from pathlib import Path

from chalicelib.api import openapi

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_is_current():
    assert DOC.read_text() == openapi.render(), "run: python -m chalicelib.api.openapi > docs/openapi.json"


def test_every_route_is_documented_in_api_md():
    api_md = (DOC.parent / "api.md").read_text()
    for path, methods in json.loads(openapi.render())["paths"].items():
        for method in methods:
            assert f"| {method.upper()} | {path} |" in api_md, (method, path)
