"""Job routes: creation rules, idempotency (also under 20 concurrent creates), views, cancel."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.services import jobs as job_service
from otaformat import messages, signing

from .flows import publish, register_device


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def package(api, world, key):
    return publish(api, world, key, app="demo", version="1.1.0", size=10000)


def job_body(package, **changes):
    body = {"package_id": package, "targets": {"devices": ["dev-1"]}, "mode": "block", "block_size": 1024,
            "window": 4, "timeouts": {"stall_seconds": 60, "total_seconds": 3600}}
    body.update(changes)
    return body


def test_create_job_publishes_a_signed_job_document(api, world, package, key):
    register_device(api, "dev-1")
    answer = api.call("POST", "/jobs", job_body(package))
    assert answer.status_code == 201, answer.json
    job = answer.json
    assert job["counts"]["QUEUED"] == 1 and job["bytes_done"] == 0 and job["percent"] == 0.0
    [doc] = world.publisher.job_documents("dev-1")
    shown = api.call("GET", f"/packages/{package}").json
    assert doc.job_id == job["job_id"] and doc.epn == "dev-1" and doc.mode == "block"
    assert doc.package_size == shown["size"] and doc.package_sha256 == shown["sha256"]
    assert doc.block_count == -(-shown["size"] // 1024) and doc.window == 4
    verified = signing.verify_envelope(doc.envelope, {signing.key_id(key.public_key()): key.public_key()})
    assert verified.manifest.version == "1.1.0"
    assert 0 <= doc.stream <= 0xFFFF


def test_url_mode_document_has_a_presigned_get(api, world, package):
    register_device(api, "dev-1")
    assert api.call("POST", "/jobs", job_body(package, mode="url")).status_code == 201
    [doc] = world.publisher.job_documents("dev-1")
    assert doc.url and world.settings.repository_bucket in doc.url and doc.url_expires


def test_model_target_reaches_every_registered_device_of_the_model(api, world, package):
    for epn, model in (("dev-1", "model-a"), ("dev-2", "model-a"), ("dev-3", "model-b")):
        register_device(api, epn, model=model)
    job = api.call("POST", "/jobs", job_body(package, targets={"model": "model-a"})).json
    executions = api.call("GET", f"/jobs/{job['job_id']}/executions").json["executions"]
    assert sorted(e["epn"] for e in executions) == ["dev-1", "dev-2"]
    assert world.publisher.job_documents("dev-3") == []


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"block_size": 255}, 400, "block_size"),
    ({"block_size": 120 * 1024 + 1}, 400, "block_size"),
    ({"block_size": "1024"}, 400, "block_size"),
    ({"mode": "carrier-pigeon"}, 400, "mode"),
    ({"window": 0}, 400, "window"),
    ({"targets": {}}, 400, "targets"),
    ({"targets": {"devices": ["ghost"]}}, 404, "targets.devices"),
    ({"targets": {"devices": ["a/b"]}}, 400, "targets.devices"),
    ({"targets": {"model": "model-z"}}, 409, "targets.model"),
    ({"package_id": "up-missing"}, 404, "package_id"),
    ({"timeouts": {"stall_seconds": -1}}, 400, "stall_seconds"),
    ({"surprise": 1}, 400, "surprise"),
])
def test_create_job_rejections(api, package, change, status, field):
    register_device(api, "dev-1")
    answer = api.call("POST", "/jobs", job_body(package, **change))
    assert answer.status_code == status, answer.json
    assert field in answer.json["message"]
    assert api.call("GET", "/jobs").json["jobs"] == []


@pytest.mark.parametrize(("epn", "reason"), [("dev-1", "no downgrades"), ("dev-2", "model model-b")])
def test_no_downgrade_and_no_wrong_model_skipped_or_refused(api, world, package, epn, reason):
    register_device(api, "dev-1", apps={"demo": "2.0.0"})
    register_device(api, "dev-2", model="model-b")
    refused = api.call("POST", "/jobs", job_body(package, targets={"devices": [epn]}, all_or_nothing=True))
    assert refused.status_code == 409 and reason in refused.json["message"], refused.json
    made = api.call("POST", "/jobs", job_body(package, targets={"devices": [epn]}))
    assert made.status_code == 201, made.json
    job = api.call("GET", f"/jobs/{made.json['job_id']}").json
    assert job["counts"]["SKIPPED"] == 1 and job["targets_resolved"] == 1 and job["executions_created"] == 0
    assert job["state"] == "COMPLETED"  # nothing to send: every target is terminal
    skipped = api.call("GET", f"/jobs/{made.json['job_id']}/executions/{epn}").json
    assert skipped["state"] == "SKIPPED" and reason in skipped["timeline"][-1]["reason"]
    assert world.publisher.job_documents(epn) == []  # a skipped device is told nothing


def test_package_must_be_available(api, world, package):
    register_device(api, "dev-1")
    api.call("POST", f"/packages/{package}/retire")
    answer = api.call("POST", "/jobs", job_body(package))
    assert answer.status_code == 409 and "AVAILABLE" in answer.json["message"]


def test_idempotency_key_same_body_same_job_other_body_conflict(api, world, package):
    register_device(api, "dev-1")
    headers = {"Idempotency-Key": "rollout-42"}
    first = api.call("POST", "/jobs", job_body(package), headers=headers)
    again = api.call("POST", "/jobs", job_body(package), headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json["job_id"] == again.json["job_id"]
    other = api.call("POST", "/jobs", job_body(package, window=8), headers=headers)
    assert other.status_code == 409
    assert len(api.call("GET", "/jobs").json["jobs"]) == 1
    assert len(world.publisher.job_documents("dev-1")) == 1


def test_twenty_concurrent_creates_with_one_key_make_one_job(api, world, package):
    register_device(api, "dev-1")
    c = world.container
    body = job_body(package)
    results, errors = [], []
    start = threading.Barrier(20)

    def create():
        try:
            start.wait()
            results.append(job_service.create_job(c.repository, c.storage, c.publisher, c.clock(), body, "k-20")[0])
        except Exception as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len({job.job_id for job in results}) == 1
    assert len(c.repository.list_jobs()) == 1
    assert len(world.publisher.job_documents("dev-1")) == 1


def test_cancel_publishes_cancel_and_is_sticky(api, world, package):
    register_device(api, "dev-1")
    job = api.call("POST", "/jobs", job_body(package)).json
    canceled = api.call("POST", f"/jobs/{job['job_id']}/cancel")
    assert canceled.status_code == 200 and canceled.json["state"] == "CANCELED"
    assert canceled.json["counts"]["CANCELED"] == 1
    [doc] = world.publisher.job_documents("dev-1")
    assert world.publisher.cancels("dev-1") == [doc.execution_id]
    again = api.call("POST", f"/jobs/{job['job_id']}/cancel")
    assert again.json["counts"]["CANCELED"] == 1 and world.publisher.cancels("dev-1") == [doc.execution_id]


def test_views_job_execution_device_executions(api, world, package):
    register_device(api, "dev-1")
    job = api.call("POST", "/jobs", job_body(package)).json
    one = api.call("GET", f"/jobs/{job['job_id']}/executions/dev-1")
    assert one.status_code == 200
    assert one.json["state"] == "QUEUED" and one.json["blocks_acked"] == 0 and one.json["blocks_total"] > 0
    assert one.json["timeline"][0]["state"] == "QUEUED"
    mine = api.call("GET", "/devices/dev-1/executions").json["executions"]
    assert [e["execution_id"] for e in mine] == [one.json["execution_id"]]
    assert api.call("GET", f"/jobs/{job['job_id']}/executions/dev-9").status_code == 404
    assert api.call("GET", "/jobs/job-missing").status_code == 404
    assert [j["job_id"] for j in api.call("GET", "/jobs").json["jobs"]] == [job["job_id"]]


def test_cancel_message_codec_roundtrip_matches_agent_contract():
    payload = messages.encode(messages.Cancel("ex-1"))
    assert messages.decode(payload) == messages.Cancel("ex-1")
