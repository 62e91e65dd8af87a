"""A delta job's fallback package (issue 13) through the API on moto: what POST /jobs refuses, which
device takes the delta, the full package or nothing, what each is sent (job document, blocks from the
right repository object, the sweeper's resends, the inventory's republish), the listing and the
job's totals, and the estimate."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.schedules import sweep
from otaformat import messages

from .fakes import scheduled_event
from .flows import publish, register_device, send, upload
from .test_device_messages import Agent

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def packages(api, world) -> dict[str, str]:
    """The golden demo delta 1.0.0 -> 1.1.0 and full packages 1.0.0 and 1.1.0 (model-a), AVAILABLE."""
    pem = (FIXTURES / "publisher.pub").read_text()
    assert api.call("POST", "/keys", {"public_key": pem, "name": "golden"}).status_code in (200, 201)
    ids = {name: upload(api, world, (FIXTURES / f"{file}.otapkg").read_bytes()) for name, file in (
        ("delta", "good-delta-1.0.0-to-1.1.0"), ("full", "good-full-1.1.0"), ("old", "good-full-1.0.0"))}
    for upload_id in ids.values():
        assert api.call("GET", f"/packages/{upload_id}").json["state"] == "AVAILABLE"
    return ids


def package(api, upload_id: str) -> dict:
    return api.call("GET", f"/packages/{upload_id}").json


def listing(api, job_id: str) -> dict[str, dict]:
    return {e["epn"]: e for e in api.call("GET", f"/jobs/{job_id}/executions").json["executions"]}


FLEET = {"dev-base": ("model-a", {"demo": "1.0.0"}), "dev-old": ("model-a", {"demo": "0.9.0"}),
         "dev-none": ("model-a", {}), "dev-target": ("model-a", {"demo": "1.1.0"}),
         "dev-ahead": ("model-a", {"demo": "2.0.0"}), "dev-b": ("model-b", {"demo": "0.9.0"})}


def test_devices_off_the_base_take_the_full_package_and_the_rest_as_before(api, world, packages) -> None:
    for epn, (model, apps) in FLEET.items():
        register_device(api, epn, model=model, apps=apps)
    made = api.call("POST", "/jobs", {"package_id": packages["delta"], "fallback_package_id": packages["full"],
                                      "targets": {"devices": sorted(FLEET)}, "block_size": 256, "window": 4})
    assert made.status_code == 201, made.json
    job = api.call("GET", f"/jobs/{made.json['job_id']}").json
    assert job["fallback_package_id"] == packages["full"] and job["fallback_executions"] == 2
    shown = listing(api, job["job_id"])
    taken = {epn: (e["state"], e["package_id"], e["fallback"]) for epn, e in shown.items()}
    delta, full = packages["delta"], packages["full"]
    assert taken == {"dev-base": ("QUEUED", delta, False), "dev-old": ("QUEUED", full, True),
                     "dev-none": ("QUEUED", full, True), "dev-target": ("SKIPPED", delta, False),
                     "dev-ahead": ("SKIPPED", delta, False), "dev-b": ("SKIPPED", delta, False)}
    assert "the delta needs 1.0.0" in shown["dev-target"]["reason"]
    assert "no downgrades" in shown["dev-ahead"]["reason"] and "model-b" in shown["dev-b"]["reason"]
    assert f"the full package {full}" in shown["dev-old"]["timeline"][0]["reason"]
    sizes = {name: package(api, packages[name])["size"] for name in ("delta", "full")}
    assert shown["dev-old"]["bytes_total"] == sizes["full"] and shown["dev-base"]["bytes_total"] == sizes["delta"]
    assert job["bytes_total"] == sizes["delta"] + 2 * sizes["full"]
    [on_base] = world.publisher.job_documents("dev-base")
    [off_base] = world.publisher.job_documents("dev-old")
    assert on_base.package_sha256 == package(api, delta)["sha256"] and on_base.group is not None
    assert off_base.package_sha256 == package(api, full)["sha256"] and off_base.package_size == sizes["full"]
    manifest = off_base.envelope["manifest"]  # the full package's signed manifest, unicast only
    assert (manifest["version"], manifest.get("delta"), off_base.group) == ("1.1.0", None, None)
    assert on_base.envelope["manifest"]["delta"]["base_version"] == "1.0.0"
    assert off_base.block_count == -(-sizes["full"] // 256)


def test_a_fallback_execution_is_sent_the_full_package_by_acks_resends_and_republishes(api, world, packages):
    register_device(api, "dev-base", apps={"demo": "1.0.0"})
    register_device(api, "dev-old", apps={"demo": "0.9.0"})
    made = api.call("POST", "/jobs", {"package_id": packages["delta"], "fallback_package_id": packages["full"],
                                      "targets": {"devices": ["dev-base", "dev-old"]}, "block_size": 256,
                                      "window": 4, "timeouts": {"stall_seconds": 600, "total_seconds": 3600}})
    assert made.status_code == 201, made.json
    [doc] = world.publisher.job_documents("dev-old")
    agent = Agent(world, doc, "dev-old")
    agent.status("IN_PROGRESS", "DOWNLOADING")
    agent.request_all()
    first = agent.new_frames()
    assert [f.index for f in first] == [0, 1, 2, 3]
    world.clock.advance(30)  # nothing acknowledged: the sweeper resends the window, of the full package
    sweep(scheduled_event(), None)
    resent = agent.new_frames()
    assert [f.index for f in resent] == [0, 1, 2, 3] and [f.data for f in resent] == [f.data for f in first]
    frames, rounds = first, 0
    while len(agent.have) < doc.block_count:
        agent.take(frames)
        agent.ack(set(agent.have))
        frames = agent.new_frames()
        rounds += 1
        assert rounds < 200
    s3 = world.session.client("s3")
    full = s3.get_object(Bucket=world.settings.repository_bucket,
                         Key=package(api, packages["full"])["repository_key"])["Body"].read()
    assert agent.package() == full
    assert all(topic in ("ota/dev-old/blk", "ota/dev-old/job") for topic, _ in world.publisher.sent
               if "dev-old" in topic or "/g/" in topic)  # nothing on a group topic for it
    world.publisher.clear()
    send(("dev-old", "status", messages.encode(messages.Inventory("1.0.0", "model-a", {"demo": "0.9.0"}))))
    [again] = world.publisher.job_documents("dev-old")  # republished on inventory: still the full package
    assert (again.execution_id, again.package_sha256, again.group) == (doc.execution_id, doc.package_sha256, None)
    agent.status("SUCCEEDED", seq=2)
    shown = listing(api, made.json["job_id"])["dev-old"]
    assert (shown["state"], shown["percent"], shown["blocks_acked"]) == ("SUCCEEDED", 100.0, doc.block_count)


@pytest.mark.parametrize(("job_package", "fallback", "status", "said"), [
    ("full", "full", 400, "only a delta job may name a fallback"),
    ("delta", "up-00000000000000000000", 404, "does not exist"),
    ("delta", "delta", 400, "the fallback must be a full package"),
    ("delta", "old", 400, "demo 1.0.0, the delta makes demo 1.1.0"),
    ("delta", "other-model", 409, "not for the targeted model(s) model-a"),
    ("delta", "retired", 409, "RETIRED, not AVAILABLE"),
    ("delta", 7, 400, "fallback_package_id"),
])
def test_what_a_fallback_must_be(api, world, packages, job_package, fallback, status, said) -> None:
    register_device(api, "dev-1", apps={"demo": "0.9.0"})
    key = ec.generate_private_key(ec.SECP256R1())
    if fallback == "other-model":
        packages["other-model"] = publish(api, world, key, version="1.1.0", models=("model-b",))
    if fallback == "retired":
        packages["retired"] = publish(api, world, key, version="1.1.0")
        assert api.call("POST", f"/packages/{packages['retired']}/retire").status_code == 200
    body = {"package_id": packages[job_package], "fallback_package_id": packages.get(fallback, fallback),
            "targets": {"devices": ["dev-1"]}}
    answer = api.call("POST", "/jobs", body)
    assert (answer.status_code, answer.json["field"]) == (status, "fallback_package_id"), answer.json
    assert said in answer.json["message"]
    estimate = api.call("POST", "/jobs?dry_run=true", body)  # the estimate refuses as creation does
    assert estimate.status_code == status
    assert api.call("GET", "/jobs").json["jobs"] == []


def test_all_or_nothing_counts_a_fallback_target_as_able(api, world, packages) -> None:
    register_device(api, "dev-1", apps={"demo": "0.9.0"})
    body = {"package_id": packages["delta"], "targets": {"devices": ["dev-1"]}, "all_or_nothing": True}
    assert api.call("POST", "/jobs", body).status_code == 409  # no fallback: off base refuses the job
    made = api.call("POST", "/jobs", {**body, "fallback_package_id": packages["full"]})
    assert made.status_code == 201, made.json
    register_device(api, "dev-2", apps={"demo": "1.1.0"})  # on the target: not for a fallback either
    again = api.call("POST", "/jobs", {**body, "targets": {"devices": ["dev-1", "dev-2"]},
                                       "fallback_package_id": packages["full"]})
    assert again.status_code == 409 and "dev-2 has demo 1.1.0, the delta needs 1.0.0" in again.json["message"]


def test_the_estimate_prices_fallback_devices_at_the_full_size(api, world, packages) -> None:
    register_device(api, "dev-base", apps={"demo": "1.0.0"})
    for n in range(3):
        register_device(api, f"dev-old-{n}", apps={"demo": "0.9.0"})
    body = {"package_id": packages["delta"], "targets": {"model": "model-a"}, "block_size": 256}
    alone = api.call("POST", "/jobs?dry_run=true", body).json
    assert alone["rollout"]["targets"] == 1 and "fallback" not in alone
    both = api.call("POST", "/jobs?dry_run=true", {**body, "fallback_package_id": packages["full"]}).json
    full = package(api, packages["full"])
    assert both["fallback"] == {"package_id": packages["full"], "package_size": full["size"], "targets": 3}
    assert both["rollout"]["targets"] == 4 and both["total"] > alone["total"]
    only_full = api.call("POST", "/jobs?dry_run=true", {**body, "package_id": packages["full"]}).json
    assert only_full["rollout"]["targets"] == 4  # the full package alone goes to all four
    per_full_device = only_full["counts"]["blocks"] / 4
    assert both["counts"]["blocks"] == alone["counts"]["blocks"] + 3 * per_full_device
    assert api.call("GET", "/jobs").json["jobs"] == []


def test_url_mode_hands_the_fallback_device_the_full_packages_url(api, world, packages) -> None:
    register_device(api, "dev-base", apps={"demo": "1.0.0"})
    register_device(api, "dev-none")
    made = api.call("POST", "/jobs", {"package_id": packages["delta"], "fallback_package_id": packages["full"],
                                      "targets": {"devices": ["dev-base", "dev-none"]}, "mode": "url"})
    assert made.status_code == 201, made.json
    keys = {name: package(api, packages[name])["repository_key"] for name in ("delta", "full")}
    [on_base], [off_base] = world.publisher.job_documents("dev-base"), world.publisher.job_documents("dev-none")
    assert keys["delta"] in on_base.url and keys["full"] not in on_base.url
    assert keys["full"] in off_base.url and off_base.package_sha256 == package(api, packages["full"])["sha256"]


def test_a_continuous_delta_job_gives_a_device_registered_later_the_fallback(api, world, packages) -> None:
    register_device(api, "dev-base", apps={"demo": "1.0.0"})
    made = api.call("POST", "/jobs", {"package_id": packages["delta"], "fallback_package_id": packages["full"],
                                      "targets": {"model": "model-a", "continuous": True}})
    assert made.status_code == 201, made.json
    register_device(api, "dev-late")  # no demo yet
    late = listing(api, made.json["job_id"])["dev-late"]
    assert (late["state"], late["package_id"], late["fallback"]) == ("QUEUED", packages["full"], True)
    [doc] = world.publisher.job_documents("dev-late")
    assert doc.package_sha256 == package(api, packages["full"])["sha256"]
