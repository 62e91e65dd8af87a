"""Staged rollouts (issue 13) through the real handlers on moto: POST /jobs with `waves`, the fan-out,
device messages and the scheduled sweeper, the clock advanced by hand (no sleeps). A wave's devices get
their job documents only once the sweeper started their wave; the failure threshold is per wave."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.schedules import sweep
from otaformat import messages

from .fakes import scheduled_event, status
from .flows import publish, register_device, send

EPNS = [f"dev-{n}" for n in range(6)]


@pytest.fixture
def package(api, world):
    return publish(api, world, ec.generate_private_key(ec.SECP256R1()), app="demo", version="1.1.0", size=3000)


@pytest.fixture
def fleet(api):
    for epn in EPNS:
        register_device(api, epn)
    return EPNS


def create(api, package, waves, devices=EPNS, **extra):
    body = {"package_id": package, "targets": {"devices": list(devices)}, "block_size": 1024,
            "timeouts": {"stall_seconds": 60, "total_seconds": 3600}, "waves": waves, **extra}
    answer = api.call("POST", "/jobs", body)
    assert answer.status_code == 201, answer.json
    return answer.json["job_id"]


def report(world, epn, state, seq=1, reason=None):
    doc = world.publisher.job_documents(epn)[-1]
    send((epn, "status", status(doc.execution_id, state, None, seq, reason)), received_ms=int(world.clock.now * 1000))


def documents(world) -> dict[str, int]:
    return {epn: len(world.publisher.job_documents(epn)) for epn in EPNS}


def executions(api, job_id) -> dict[str, tuple[str, int | None]]:
    listed = api.call("GET", f"/jobs/{job_id}/executions").json["executions"]
    return {e["epn"]: (e["state"], e["wave"]) for e in listed}


def tick(world, seconds=1.0) -> dict:
    world.clock.advance(seconds)
    return sweep(scheduled_event(), None)


def test_three_waves_one_after_another_and_an_abort_in_wave_1_stops_wave_2(api, world, package, fleet):
    job_id = create(api, package, {"size": 2}, abort={"failure_threshold_percent": 50, "min_executed": 10})
    assert documents(world) == {"dev-0": 1, "dev-1": 1, "dev-2": 0, "dev-3": 0, "dev-4": 0, "dev-5": 0}
    assert executions(api, job_id) == {"dev-0": ("QUEUED", 0), "dev-1": ("QUEUED", 0), "dev-2": ("WAITING", 1),
                                       "dev-3": ("WAITING", 1), "dev-4": ("WAITING", 2), "dev-5": ("WAITING", 2)}
    view = api.call("GET", f"/jobs/{job_id}").json
    assert view["waves"]["size"] == 2 and view["waves"]["pause_seconds"] == 0
    assert view["waves"]["current"] == 0 and view["waves"]["total"] == 3 and view["counts"]["WAITING"] == 4
    send(("dev-4", "status", messages.encode(messages.Inventory("1.0.0", "model-a", {"demo": "1.0.0"}))))
    assert documents(world)["dev-4"] == 0  # an inventory does not send what its wave has not started
    report(world, "dev-0", "SUCCEEDED")
    assert tick(world, 3000)["waves_started"] == 0  # dev-1 still running
    assert executions(api, job_id)["dev-2"] == ("WAITING", 1)
    report(world, "dev-1", "SUCCEEDED")
    assert tick(world)["waves_started"] == 1
    assert documents(world) == {"dev-0": 1, "dev-1": 1, "dev-2": 1, "dev-3": 1, "dev-4": 0, "dev-5": 0}
    assert tick(world)["waves_started"] == 0  # started once
    shown = api.call("GET", f"/jobs/{job_id}/executions/dev-2").json
    assert shown["state"] == "QUEUED" and shown["timeline"][-1]["reason"] == "wave 1 started"
    assert tick(world, 3000)["timed_out"] == 0  # its total timeout counts from its wave's start
    report(world, "dev-2", "FAILED", reason="install failed: script exit 3")
    assert api.call("GET", f"/jobs/{job_id}").json["state"] == "ACTIVE"  # 1 of 2 executed in wave 1
    report(world, "dev-3", "FAILED", reason="install failed: script exit 3")
    view = api.call("GET", f"/jobs/{job_id}").json
    assert view["state"] == "ABORTED"  # 2 of 2 of wave 1 failed: min_executed is capped at the wave's size
    assert executions(api, job_id)["dev-4"] == ("CANCELED", 2)
    assert world.publisher.cancels("dev-4") == []  # never sent: nothing to tell it
    assert tick(world, 600)["waves_started"] == 0 and documents(world)["dev-4"] == 0
    recent = {w["wave"]: w["counts"] for w in view["waves"]["recent"]}
    assert recent[1]["FAILED"] == 2 and recent[0]["SUCCEEDED"] == 2 and set(recent) == {0, 1}


def test_failures_of_an_earlier_wave_do_not_add_up_with_the_next(api, world, package, fleet):
    job_id = create(api, package, {"size": 3}, abort={"failure_threshold_percent": 50, "min_executed": 2})
    report(world, "dev-0", "FAILED", reason="install failed")
    report(world, "dev-1", "SUCCEEDED")
    report(world, "dev-2", "SUCCEEDED")  # wave 0: 1 of 3 failed
    assert tick(world)["waves_started"] == 1
    report(world, "dev-3", "SUCCEEDED")
    report(world, "dev-4", "FAILED", reason="install failed")  # wave 1: 1 of 2 so far = 50 %
    assert api.call("GET", f"/jobs/{job_id}").json["state"] == "ABORTED"  # job-wide it would be 2 of 5


def test_pause_counts_from_the_end_of_a_wave(api, world, package, fleet):
    job_id = create(api, package, {"size": 3, "pause_seconds": 300})
    for epn in ("dev-0", "dev-1", "dev-2"):
        report(world, epn, "SUCCEEDED")
    assert tick(world, 10)["waves_started"] == 0  # finished: the pause begins now
    finished = api.call("GET", f"/jobs/{job_id}").json["waves"]["current_finished_at"]
    assert finished is not None
    assert tick(world, 299)["waves_started"] == 0 and documents(world)["dev-3"] == 0
    assert tick(world, 1)["waves_started"] == 1 and documents(world)["dev-3"] == 1
    view = api.call("GET", f"/jobs/{job_id}").json["waves"]
    assert view["current"] == 1 and view["current_finished_at"] is None


def test_interval_starts_waves_at_a_rate_without_waiting_for_them(api, world, package, fleet):
    create(api, package, {"size": 2, "interval_seconds": 60})
    assert tick(world, 59)["waves_started"] == 0
    assert tick(world, 1)["waves_started"] == 1  # wave 0 still running
    assert documents(world) == {"dev-0": 1, "dev-1": 1, "dev-2": 1, "dev-3": 1, "dev-4": 0, "dev-5": 0}
    assert tick(world, 60)["waves_started"] == 1 and documents(world)["dev-5"] == 1
    assert tick(world, 600)["waves_started"] == 0  # no fourth wave


def test_percent_of_a_model_sizes_waves_when_the_fanout_is_done_and_the_job_completes(api, world, package, fleet):
    job_id = api.call("POST", "/jobs", {"package_id": package, "targets": {"model": "model-a"}, "block_size": 1024,
                                        "waves": {"percent": 40}}).json["job_id"]
    view = api.call("GET", f"/jobs/{job_id}").json
    assert view["waves"]["wave_size"] == 3 and view["waves"]["total"] == 2  # ceil(40 % of 6) = 3
    first = [epn for epn, n in documents(world).items() if n]
    assert len(first) == 3
    for epn in first:
        report(world, epn, "SUCCEEDED")
    assert tick(world)["waves_started"] == 1
    for epn in EPNS:
        if epn not in first:
            report(world, epn, "SUCCEEDED")
    assert tick(world)["completed_jobs"] == 1
    assert api.call("GET", f"/jobs/{job_id}").json["state"] == "COMPLETED"


def test_a_continuous_job_takes_late_devices_into_the_current_wave(api, world, package, fleet):
    job_id = api.call("POST", "/jobs", {"package_id": package, "targets": {"model": "model-a", "continuous": True},
                                        "block_size": 1024, "waves": {"size": 4}}).json["job_id"]
    register_device(api, "late-1")
    late = api.call("GET", f"/jobs/{job_id}/executions/late-1").json
    assert late["state"] == "QUEUED" and late["wave"] == 0 and len(world.publisher.job_documents("late-1")) == 1


@pytest.mark.parametrize(("waves", "field"), [
    ({}, "waves"),
    ({"size": 2, "percent": 10}, "waves"),
    ({"size": 0}, "waves.size"),
    ({"size": 10_001}, "waves.size"),
    ({"size": True}, "waves.size"),
    ({"percent": 0}, "waves.percent"),
    ({"percent": 101}, "waves.percent"),
    ({"size": 2, "pause_seconds": 10, "interval_seconds": 10}, "waves"),
    ({"size": 2, "pause_seconds": -1}, "waves.pause_seconds"),
    ({"size": 2, "pause_seconds": 7 * 86400 + 1}, "waves.pause_seconds"),
    ({"size": 2, "interval_seconds": 0}, "waves.interval_seconds"),
    ({"size": 2, "every": 3}, "waves"),
    ([2], "waves"),
])
def test_bad_waves_are_400_naming_the_field(api, world, package, fleet, waves, field):
    for query in ("", "?dry_run=true"):
        answer = api.call("POST", f"/jobs{query}", {"package_id": package, "targets": {"devices": EPNS},
                                                    "waves": waves})
        assert answer.status_code == 400 and answer.json["field"] == field, (query, answer.json)


def test_an_explicit_list_needing_more_than_1000_waves_is_refused(api, world, package):
    devices = [f"d-{n}" for n in range(1001)]
    for query in ("", "?dry_run=true"):
        answer = api.call("POST", f"/jobs{query}", {"package_id": package, "targets": {"devices": devices},
                                                    "waves": {"size": 1}})
        assert answer.status_code == 400 and answer.json["field"] == "waves.size", answer.json


def test_the_estimate_takes_waves_and_prices_the_same(api, world, package, fleet):
    body = {"package_id": package, "targets": {"devices": EPNS}}
    plain = api.call("POST", "/jobs?dry_run=true", body)
    staged = api.call("POST", "/jobs?dry_run=true", {**body, "waves": {"percent": 10, "interval_seconds": 60}})
    assert plain.status_code == staged.status_code == 200 and staged.json["total"] == plain.json["total"]
    assert api.call("GET", "/jobs").json["jobs"] == []
