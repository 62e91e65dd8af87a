"""Every operator route needs the token; hostile bodies get 4xx naming the field; nothing answers 5xx."""

from __future__ import annotations

import json

import pytest

from chalicelib.api.errors import to_response
from chalicelib.domain import errors as de

ROUTES = [
    ("POST", "/devices"), ("GET", "/devices"), ("GET", "/devices/dev-1"), ("DELETE", "/devices/dev-1"),
    ("GET", "/devices/dev-1/executions"), ("POST", "/keys"), ("GET", "/keys"), ("DELETE", "/keys/abc"),
    ("POST", "/packages"), ("GET", "/packages"), ("GET", "/packages/up-1"), ("POST", "/packages/up-1/retire"),
    ("POST", "/jobs"), ("GET", "/jobs"), ("GET", "/jobs/job-1"), ("GET", "/jobs/job-1/executions"),
    ("GET", "/jobs/job-1/executions/dev-1"), ("POST", "/jobs/job-1/cancel"),
]

HOSTILE = [
    b"{bad json", b"[]", b"null", b"\"text\"", b"1e999", b'{"a": NaN}', b'{"a": 1, "a": 2}',
    b"[" * 5000 + b"]" * 5000, b"\xff\xfe\x00", json.dumps({"epn": {"nested": [1, 2]}, "model": None}).encode(),
    json.dumps({"size": -1, "package_id": ["x"], "targets": "all", "epn": "x" * 10000}).encode(),
    json.dumps({"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "name": ""}).encode(),
    b"{" + b'"k": 1,' * 20000 + b'"z": 0}',
]


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong", 403), ("", 403)])
def test_operator_routes_need_the_token(api, world, token, status):
    answers = {(method, path): api.call(method, path, {"epn": "dev-1", "model": "m"}, token=token).status_code
               for method, path in ROUTES}
    assert answers == {route: status for route in ROUTES}
    assert world.container.repository.list_devices() == []


def test_register_route_does_not_take_the_operator_token(api):
    answer = api.call("POST", "/devices/dev-1/register", {"csr": "x"})
    assert answer.status_code == 401


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[0] == "POST"]
                         + [("POST", "/devices/dev-1/register")])
def test_hostile_bodies_are_4xx_never_5xx(api, method, path):
    for raw in HOSTILE:
        answer = api.call(method, path, raw=raw)
        assert 400 <= answer.status_code < 500, (raw[:40], answer.body)
        assert answer.json["message"]


@pytest.mark.parametrize("path", ["/devices/a%2Fb", "/devices/..", "/jobs/" + "j" * 300, "/packages/" + "p" * 300,
                                  "/devices/" + "d" * 65 + "/executions"])
def test_hostile_path_ids_are_4xx(api, path):
    assert 400 <= api.call("GET", path).status_code < 500


@pytest.mark.parametrize(("err", "status"), [
    (de.InvalidInput("x"), 400), (de.Unauthorized("x"), 401), (de.Forbidden("x"), 403), (de.NotFound("x"), 404),
    (de.Conflict("x"), 409), (ValueError("x"), 400), (RecursionError(), 400), (RuntimeError("boom"), 503),
])
def test_error_mapping(err, status):
    response = to_response(err)
    assert response.status_code == status
    assert set(response.body) >= {"error", "message"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/devices", {"Content-Type": "text/plain"}, 415),
        ("PUT", "/devices", {"Content-Type": "application/json"}, 405),
    ],
)
def test_answers_chalice_gives_itself_have_our_shape(api, method, path, headers, status):
    answer = api.call(method, path, raw=b"{}", headers=headers)
    assert answer.status_code == status
    assert set(answer.json) == {"error", "message"} and answer.json["message"]
