"""Releases and automatic updates: publishing offers the release (a one-device job, delta preferred) to
the devices of the model on the channel that update the app automatically; an inventory offers the
newest release; pins/opt-outs (an app left out of `auto`), other channels and devices already up to date
get nothing; each device gets at most one execution per release."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.triggers.device_messages import on_device_message
from otaformat import messages

from .fakes import device_event
from .flows import register_device, upload

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def golden(api, world) -> dict[str, str]:
    pem = (FIXTURES / "publisher.pub").read_text()
    assert api.call("POST", "/keys", {"public_key": pem, "name": "golden"}).status_code in (200, 201)
    return {name: upload(api, world, (FIXTURES / f"good-{name}.otapkg").read_bytes())
            for name in ("full-1.0.0", "full-1.1.0", "delta-1.0.0-to-1.1.0")}


def inventory(epn: str, apps: dict[str, str], channel: str | None = "stable", auto: tuple[str, ...] = ("demo",)):
    payload = messages.encode(messages.Inventory("1.0.0", "model-a", apps, channel, auto if channel else ()))
    return on_device_message(device_event([(epn, "status", payload)]), None)


def publish(api, version="1.1.0", channel="stable"):
    return api.call("POST", "/releases", {"app": "demo", "version": version, "model": "model-a", "channel": channel})


def test_publishing_offers_the_release_to_devices_that_follow_it(api, world, golden):
    cases = {"on-base": ({"demo": "1.0.0"}, "stable", ("demo",)), "fresh": ({}, "stable", ("demo",)),
             "opted-out": ({"demo": "1.0.0"}, "stable", ()), "beta": ({"demo": "1.0.0"}, "beta", ("demo",)),
             "manual": ({"demo": "1.0.0"}, None, ()), "current": ({"demo": "1.1.0"}, "stable", ("demo",))}
    for epn, (apps, channel, auto) in cases.items():
        register_device(api, epn, apps=apps)
        inventory(epn, apps, channel, auto)
    world.publisher.clear()
    answer = publish(api)
    assert answer.status_code == 201 and answer.json["offered"] == 2, answer.json
    [delta_doc] = world.publisher.job_documents("on-base")
    [full_doc] = world.publisher.job_documents("fresh")
    assert delta_doc.envelope["manifest"]["delta"] is not None  # preferred: a delta from the installed version
    assert full_doc.envelope["manifest"]["delta"] is None and full_doc.envelope["manifest"]["version"] == "1.1.0"
    for epn in ("opted-out", "beta", "manual", "current"):
        assert world.publisher.job_documents(epn) == [], epn
    execs = api.call("GET", "/devices/on-base/executions").json["executions"]
    assert [e["state"] for e in execs] == ["QUEUED"]  # operators see it as an execution
    assert [r["release_id"] for r in api.call("GET", "/releases").json["releases"]] == [
        "demo@1.1.0:model-a:stable"]


def test_an_inventory_offers_the_newest_release_once(api, world, golden):
    register_device(api, "dev-1", apps={"demo": "1.0.0"})
    assert publish(api, "1.0.0").status_code == 201 and publish(api, "1.1.0").status_code == 201
    world.publisher.clear()
    inventory("dev-1", {"demo": "1.0.0"})  # the device's periodic check: one small message
    [doc] = world.publisher.job_documents("dev-1")
    assert doc.envelope["manifest"]["version"] == "1.1.0"
    inventory("dev-1", {"demo": "1.0.0"})  # checks again: the same execution, not a second one
    assert len(api.call("GET", "/devices/dev-1/executions").json["executions"]) == 1
    inventory("dev-1", {"demo": "1.1.0"})  # up to date: nothing new is offered
    assert len(api.call("GET", "/devices/dev-1/executions").json["executions"]) == 1


@pytest.mark.parametrize(("body", "status", "said"), [
    ({"app": "demo", "version": "9.9.9", "model": "model-a"}, 404, "no AVAILABLE full package"),
    ({"app": "demo", "version": "1.1.0", "model": "model-b"}, 404, "for model model-b"),
    ({"app": "demo", "version": "1.1", "model": "model-a"}, 400, "version"),
    ({"app": "demo", "version": "1.1.0", "model": "model-a", "channel": "Beta!"}, 400, "channel"),
    ({"app": "demo", "version": "1.1.0", "model": "model-a", "other": 1}, 400, "other"),
])
def test_publish_is_validated(api, world, golden, body, status, said):
    answer = api.call("POST", "/releases", body)
    assert answer.status_code == status and said in answer.json["message"], answer.json


def test_a_release_is_published_once(api, world, golden):
    assert publish(api).status_code == 201
    again = publish(api)
    assert again.status_code == 409 and "already published" in again.json["message"]
