"""Device routes: pre-authorisation, registration with a one-time token, listing, deregistration."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from .fakes import make_csr
from .flows import register_device


def preauth(api, epn="dev-1", model="model-a"):
    answer = api.call("POST", "/devices", {"epn": epn, "model": model})
    assert answer.status_code == 201, answer.json
    return answer.json["registration_token"]


def test_register_returns_certificate_mqtt_endpoint_and_topics(api, world):
    answer = register_device(api, "dev-1", apps={"demo": "1.0.0"})
    assert "BEGIN CERTIFICATE" in answer["certificate"]
    assert answer["ca"] == world.signer.ca_pem()
    assert answer["mqtt"] == {"host": "mqtt.example.test", "port": 8883}
    assert answer["topics"]["job"] == "ota/dev-1/job"
    shown = api.call("GET", "/devices/dev-1").json
    assert shown["state"] == "REGISTERED" and shown["apps"] == {"demo": "1.0.0"}
    iot = world.session.client("iot")
    thing = iot.describe_thing(thingName="dev-1")
    assert thing["attributes"] == {"model": "model-a"}
    assert iot.list_thing_principals(thingName="dev-1")["principals"]


def test_token_is_stored_only_as_a_hash(api, world):
    token = preauth(api)
    device = world.container.repository.get_device("dev-1")
    assert token not in repr(device)


def test_retry_with_same_token_and_key_returns_same_certificate(api, world):
    token = preauth(api)
    key = ec.generate_private_key(ec.SECP256R1())
    body = {"token": token, "csr": make_csr("dev-1", key), "agent_version": "1.0.0", "apps": {}}
    first = api.call("POST", "/devices/dev-1/register", body, token=None)
    again = api.call("POST", "/devices/dev-1/register", {**body, "csr": make_csr("dev-1", key)}, token=None)
    assert first.status_code == again.status_code == 200
    assert first.json["certificate"] == again.json["certificate"]
    assert world.signer.signed == 1


def test_same_token_other_key_is_a_conflict(api):
    token = preauth(api)
    body = {"token": token, "csr": make_csr("dev-1"), "agent_version": "1.0.0"}
    assert api.call("POST", "/devices/dev-1/register", body, token=None).status_code == 200
    other = api.call("POST", "/devices/dev-1/register", {**body, "csr": make_csr("dev-1")}, token=None)
    assert other.status_code == 409


@pytest.mark.parametrize(("case", "status"), [
    ("wrong-token", 401), ("unknown-epn", 401), ("expired", 401), ("missing-token", 401),
    ("bad-csr", 400), ("bad-agent-version", 400), ("bad-app", 400),
])
def test_registration_rejections(api, world, case, status):
    token = preauth(api)
    body = {"token": token, "csr": make_csr("dev-1"), "agent_version": "1.0.0", "apps": {}}
    epn = "dev-1"
    if case == "wrong-token":
        body["token"] = "x" + token
    elif case == "unknown-epn":
        epn = "dev-2"
    elif case == "expired":
        world.clock.advance(8 * 24 * 3600)
    elif case == "missing-token":
        del body["token"]
    elif case == "bad-csr":
        body["csr"] = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    elif case == "bad-agent-version":
        body["agent_version"] = "1.0"
    elif case == "bad-app":
        body["apps"] = {"../etc": "1.0.0"}
    answer = api.call("POST", f"/devices/{epn}/register", body, token=None)
    assert answer.status_code == status, answer.json
    assert api.call("GET", "/devices/dev-1").json["state"] == "PREAUTHORIZED"


@pytest.mark.parametrize("epn", ["a/b", "a+b", "a#", "x" * 65, "dev$", "..", "é"])
def test_hostile_epn_ids_are_refused(api, epn):
    answer = api.call("POST", "/devices", {"epn": epn, "model": "model-a"})
    assert answer.status_code == 400
    assert "epn" in answer.json["message"]


def test_duplicate_preauthorisation_is_a_conflict(api):
    preauth(api)
    assert api.call("POST", "/devices", {"epn": "dev-1", "model": "model-a"}).status_code == 409


def test_list_filter_show_and_deregister_revokes(api, world):
    register_device(api, "dev-1", model="model-a")
    register_device(api, "dev-2", model="model-b")
    everyone = api.call("GET", "/devices").json["devices"]
    assert {d["epn"] for d in everyone} == {"dev-1", "dev-2"}
    only_b = api.call("GET", "/devices?model=model-b").json["devices"]
    assert [d["epn"] for d in only_b] == ["dev-2"]
    cert_id = api.call("GET", "/devices/dev-1").json["certificate_id"]
    gone = api.call("DELETE", "/devices/dev-1")
    assert gone.status_code == 200 and gone.json == {"epn": "dev-1", "state": "DEREGISTERED"}
    status = world.session.client("iot").describe_certificate(certificateId=cert_id)
    assert status["certificateDescription"]["status"] == "REVOKED"
    assert len(world.signer.revoked) == 1
    assert api.call("GET", "/devices/nobody").status_code == 404


def test_deregistered_device_cannot_register_again_with_old_token(api):
    token = preauth(api)
    body = {"token": token, "csr": make_csr("dev-1"), "agent_version": "1.0.0"}
    assert api.call("POST", "/devices/dev-1/register", body, token=None).status_code == 200
    api.call("DELETE", "/devices/dev-1")
    assert api.call("POST", "/devices/dev-1/register", body, token=None).status_code == 403


@pytest.mark.parametrize("path", ["/devices", "/devices?model=model-a", "/packages", "/jobs"])
def test_list_routes_page_with_limit_and_cursor(api, path):
    for n in range(5):
        preauth(api, f"dev-{n}")
        api.call("POST", "/packages", {"size": 10 + n})
    sep = "&" if "?" in path else "?"
    seen, cursor, pages = [], None, 0
    while True:
        answer = api.call("GET", f"{path}{sep}limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert answer.status_code == 200, answer.json
        key = path.strip("/").partition("?")[0]
        assert len(answer.json[key]) <= 2 and "next_cursor" in answer.json
        seen.extend(answer.json[key])
        pages += 1
        cursor = answer.json["next_cursor"]
        if cursor is None:
            break
    whole = api.call("GET", path).json
    assert seen == whole[key] and whole["next_cursor"] is None
    assert pages == max(1, -(-len(seen) // 2))


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("cursor=", "cursor"),
    ("cursor=bm90LWEtY3Vyc29y", "cursor"), ("cursor=%21%21", "cursor"),
])
def test_bad_limits_and_tampered_cursors_are_400(api, query, field):
    for path in ("/devices", "/packages", "/jobs", "/jobs/job-x/executions"):
        answer = api.call("GET", f"{path}?{query}")
        if path.startswith("/jobs/"):
            assert answer.status_code in (400, 404)
            continue
        assert answer.status_code == 400 and answer.json["field"] == field, (path, answer.json)
