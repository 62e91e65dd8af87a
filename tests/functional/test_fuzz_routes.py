"""THREATS 15, table-driven fuzzing of every route: a valid body per route, one field (or the whole
body, or a header) replaced with a hostile value drawn by hypothesis: wrong types, huge and odd
strings, deep nesting, NaN/Infinity, negative and huge numbers, unknown keys. Every answer must be a
2xx or a 4xx with a message, never a 5xx; a 4xx must come from validation (naming what is wrong),
not from the catch-all that maps a stray TypeError/KeyError to 400."""

from __future__ import annotations

import copy
import datetime as dt
import json
import secrets
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaformat import commands as oc

from .fakes import make_csr, public_pem
from .flows import publish, register_device

GENERIC = "request could not be parsed"

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63, -(2**63), 10**300]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    st.text(max_size=80),
    st.sampled_from(["", " ", "x" * 300, "y" * 60_000, "\x00", "../../etc/passwd", "ota/+/#", "ü" * 70, "$aws",
                     "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "1.0.0.0", "01.2.3",
                     "999999999.0.0", "[" * 20, "{}", "null"]),
)


def nested(depth: int) -> Any:
    value: Any = 1
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


hostile = st.one_of(
    leaves,
    st.lists(leaves, max_size=5), st.dictionaries(st.text(max_size=10), leaves, max_size=5),
    st.integers(min_value=1, max_value=40).map(nested),
    st.integers(min_value=0, max_value=3000).map(lambda n: ["dev-1"] * n),
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON object (the places a hostile value can go)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found.extend(paths(inner, (*prefix, key)))
    elif isinstance(value, list):
        for index, inner in enumerate(value[:2]):
            found.extend(paths(inner, (*prefix, index)))
    return found


def mutate(body: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    body = copy.deepcopy(body)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@pytest.fixture
def seeded(api, world):
    """A registered device, a trusted key, an AVAILABLE package and a job, so valid ids reach deep code."""
    key = ec.generate_private_key(ec.SECP256R1())
    upload_id = publish(api, world, key, app="demo", version="1.1.0", size=3000)
    register_device(api, "dev-1")
    job = api.call("POST", "/jobs", {"package_id": upload_id, "targets": {"devices": ["dev-1"]}}).json
    fresh = api.call("POST", "/devices", {"epn": "dev-2", "model": "model-a"}).json
    issued = dt.datetime.fromtimestamp(world.clock(), dt.UTC)
    command = oc.Command(command_id="cmd-" + secrets.token_hex(8), type="run-script", issued=oc.iso(issued),
                         expires=oc.iso(issued + dt.timedelta(hours=1)), devices=("dev-1",), script="uptime")
    return {"envelope": oc.sign_command(command, key),  # type: ignore[dict-item]
            "upload_id": upload_id, "job_id": job["job_id"], "token": fresh["registration_token"],
            "csr": make_csr("dev-2"), "public_key": public_pem(ec.generate_private_key(ec.SECP256R1()))}


def routes(seed: dict[str, str]) -> list[tuple[str, str, Any]]:
    up, job = seed["upload_id"], seed["job_id"]
    return [
        ("POST", "/devices", {"epn": "fz-1", "model": "model-a", "token_ttl_seconds": 3600}),
        ("GET", "/devices?model=model-a", None), ("GET", "/devices/dev-1", None),
        ("GET", "/devices/dev-1/executions", None), ("DELETE", "/devices/dev-9", None),
        ("POST", "/devices/dev-2/register", {"token": seed["token"], "csr": seed["csr"], "agent_version": "1.0.0",
                                             "apps": {"demo": "1.0.0"}}),
        ("POST", "/keys", {"public_key": seed["public_key"], "name": "fuzz"}), ("GET", "/keys", None),
        ("DELETE", "/keys/0123456789abcdef", None),
        ("POST", "/packages", {"size": 100}), ("GET", "/packages?app=demo&state=AVAILABLE&model=m&version=1.1.0",
                                              None),
        ("GET", f"/packages/{up}", None), ("POST", "/packages/up-missing/retire", None),
        ("POST", "/jobs", {"package_id": up, "targets": {"devices": ["dev-1"]}, "mode": "block", "block_size": 1024,
                           "window": 4, "timeouts": {"stall_seconds": 60, "total_seconds": 3600}, "max_retries": 1,
                           "abort": {"failure_threshold_percent": 50, "min_executed": 2}}),
        ("GET", "/jobs", None), ("GET", f"/jobs/{job}", None), ("GET", f"/jobs/{job}/executions", None),
        ("GET", f"/jobs/{job}/executions/dev-1", None), ("POST", f"/jobs/{job}/cancel", None),
        ("POST", "/commands", {"envelope": seed.get("envelope") or {"command": {}, "signatures": []}}),
        ("GET", "/commands", None), ("GET", "/commands/cmd-0123456789abcdef", None),
        ("GET", "/commands/cmd-0123456789abcdef/runs", None),
        ("GET", "/devices/dev-1/commands", None),
        ("POST", "/releases", {"app": "demo", "version": "1.1.0", "model": "model-a", "channel": "stable"}),
        ("GET", "/releases", None),
    ]


ROUTE_COUNT = 26


def check(answer: Any, label: Any) -> None:
    assert answer.status_code < 500, (label, answer.status_code, answer.body[:300])
    if answer.status_code >= 400:
        assert answer.json and answer.json.get("message"), (label, answer.body[:300])
        assert not answer.json["message"].startswith(GENERIC), (label, answer.json)
        assert len(answer.json["message"]) <= 500, label  # a hostile value is never echoed whole


@pytest.mark.parametrize("index", range(ROUTE_COUNT))
def test_hostile_values_in_every_field_of_every_route(api, seeded, index):
    method, path, valid = routes(seeded)[index]
    body = valid if valid is not None else {"anything": 1}
    places = [*paths(body), ()]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(place=st.sampled_from(places), value=hostile, extra=st.booleans())
    def run(place, value, extra):
        sent = mutate(body, place, value)
        if extra and isinstance(sent, dict):
            sent = {**sent, "unexpected_field": value}
        raw = json.dumps(sent).encode()  # NaN and Infinity go out as bare literals, as a hostile client sends them
        check(api.call(method, path, raw=raw), (method, path, place, repr(value)[:80]))

    run()


@pytest.mark.parametrize(("field", "value", "named"), [
    ("timeouts", {"stall_seconds": -5}, "timeouts.stall_seconds"),
    ("timeouts", {"total_seconds": float("nan")}, None),
    ("abort", {"min_executed": "10"}, "abort.min_executed"),
    ("targets", {"model": "m" * 60_000}, "targets.model"),
])
def test_nested_fields_are_named_by_their_path(api, seeded, field, value, named):
    body = {**routes(seeded)[13][2], field: value}
    answer = api.call("POST", "/jobs", raw=json.dumps(body).encode())
    assert answer.status_code == 400 and len(answer.json["message"]) <= 500
    if named:
        assert answer.json["field"] == named and named in answer.json["message"]


@pytest.mark.parametrize("header", ["", " ", "x" * 129, "a b", "ü", "../k", "k\x00", "ok-key"])
def test_hostile_idempotency_keys(api, seeded, header):
    body = routes(seeded)[13][2]
    check(api.call("POST", "/jobs", body, headers={"Idempotency-Key": header}), header)


@given(text=st.text(max_size=40))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_hostile_query_strings(api, text):
    from urllib.parse import quote

    for path in ("/devices?model=", "/packages?app=", "/packages?state=", "/packages?version=", "/devices?other="):
        check(api.call("GET", path + quote(text)), (path, text))


def test_route_table_covers_every_route():
    import app as application

    covered = {(m, p.split("?")[0]) for m, p, _ in routes({"upload_id": "U", "job_id": "J", "token": "",
                                                            "csr": "", "public_key": ""})}
    templated = {(m, p.replace("dev-1", "{epn}").replace("dev-2", "{epn}").replace("dev-9", "{epn}")
                  .replace("/U", "/{upload_id}").replace("up-missing", "{upload_id}").replace("/J", "/{job_id}")
                  .replace("cmd-0123456789abcdef", "{command_id}")
                  .replace("0123456789abcdef", "{key_id}")) for m, p in covered}
    declared = {(m, p) for p, methods in application.app.routes.items() for m in methods}
    assert templated == declared
    assert len(routes({"upload_id": "U", "job_id": "J", "token": "", "csr": "", "public_key": ""})) == ROUTE_COUNT
