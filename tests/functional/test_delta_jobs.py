"""A delta job needs every target to run exactly the delta's base version: any other target is SKIPPED with
the reason, or, with all_or_nothing, the job is refused (409 naming it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .flows import register_device, upload

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def delta(api, world) -> str:
    """The golden delta demo 1.0.0 -> 1.1.0 for model-a, AVAILABLE."""
    pem = (FIXTURES / "publisher.pub").read_text()
    assert api.call("POST", "/keys", {"public_key": pem, "name": "golden"}).status_code in (200, 201)
    upload_id = upload(api, world, (FIXTURES / "good-delta-1.0.0-to-1.1.0.otapkg").read_bytes())
    shown = api.call("GET", f"/packages/{upload_id}").json
    assert (shown["state"], shown["manifest"]["delta"]) == ("AVAILABLE", True), shown
    return upload_id


@pytest.mark.parametrize(("apps", "status", "said"), [
    ({"demo": "1.0.0"}, 201, ""),
    ({}, 409, "dev-1 has no demo, the delta needs 1.0.0"),
    ({"demo": "0.9.0"}, 409, "dev-1 has demo 0.9.0, the delta needs 1.0.0"),
    ({"demo": "1.1.0"}, 409, "dev-1 has demo 1.1.0, the delta needs 1.0.0"),
    ({"demo": "2.0.0"}, 409, "no downgrades"),
    ({"other": "1.0.0"}, 409, "dev-1 has no demo"),
])
def test_a_delta_job_requires_exactly_its_base_version(api, world, delta, apps, status, said) -> None:
    register_device(api, "dev-1", apps=apps)
    answer = api.call("POST", "/jobs", {"package_id": delta, "targets": {"devices": ["dev-1"]},
                                        "all_or_nothing": True})
    assert answer.status_code == status, answer.json
    assert said in answer.json.get("message", "")
    if status == 409:  # the same without all_or_nothing: a job whose one target is SKIPPED with that reason
        made = api.call("POST", "/jobs", {"package_id": delta, "targets": {"devices": ["dev-1"]}})
        assert made.status_code == 201, made.json
        skipped = api.call("GET", f"/jobs/{made.json['job_id']}/executions/dev-1").json
        assert skipped["state"] == "SKIPPED" and said.replace("dev-1", "device") in skipped["timeline"][0]["reason"]


def test_one_device_off_base_refuses_the_whole_model_job(api, world, delta) -> None:
    register_device(api, "dev-1", apps={"demo": "1.0.0"})
    register_device(api, "dev-2", apps={})
    answer = api.call("POST", "/jobs", {"package_id": delta, "targets": {"model": "model-a"},
                                        "all_or_nothing": True})
    assert answer.status_code == 409 and "dev-2 has no demo" in answer.json["message"]
    assert "dev-1" not in answer.json["message"]
    assert api.call("GET", "/jobs").json["jobs"] == []
