"""The sweeper reads only active work: never the list of all jobs, and no job's full execution list
while the job still has something running (its cost follows live rollouts, not history)."""

from __future__ import annotations

from collections import Counter

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.triggers.schedules import sweep

from .fakes import scheduled_event, status
from .flows import publish, register_device, send


class SpyRepository:
    """Delegates to the real repository, counting calls; listing every job is a test failure."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = Counter()

    def __getattr__(self, name):
        if name == "list_jobs":
            raise AssertionError("the sweeper listed every job")
        target = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls[name] += 1
            return target(*args, **kwargs)

        return call


@pytest.fixture
def two_jobs(api, world):
    key = ec.generate_private_key(ec.SECP256R1())
    upload_id = publish(api, world, key, app="demo", version="1.1.0", size=3000)
    made = []
    for epn in ("dev-1", "dev-2"):
        register_device(api, epn)
        made.append(api.call("POST", "/jobs", {"package_id": upload_id, "targets": {"devices": [epn]},
                                               "timeouts": {"stall_seconds": 60, "total_seconds": 3600}}).json)
    return made


def test_sweeper_reads_only_active_jobs_and_executions(api, world, two_jobs):
    done, running = two_jobs
    [doc] = world.publisher.job_documents("dev-1")
    send(("dev-1", "status", status(doc.execution_id, "SUCCEEDED", None, 1)))
    spy = SpyRepository(world.container.repository)
    world.container.repository = spy
    first = sweep(scheduled_event(), None)
    assert first["completed_jobs"] == 1 and spy.calls["list_active_executions"] == 1
    assert spy.calls["list_job_executions"] == 1  # only the finished job, once, to complete it
    spy.calls.clear()
    second = sweep(scheduled_event(), None)
    assert second == {**first, "completed_jobs": 0}
    assert spy.calls["list_job_executions"] == 0  # the completed job left the active index
    world.container.repository = spy.inner
    assert api.call("GET", f"/jobs/{done['job_id']}").json["state"] == "COMPLETED"
    assert api.call("GET", f"/jobs/{running['job_id']}").json["state"] == "ACTIVE"


def test_sweeper_still_times_out_work_it_finds_in_the_active_index(api, world, two_jobs):
    world.clock.advance(3601)
    spy = SpyRepository(world.container.repository)
    world.container.repository = spy
    result = sweep(scheduled_event(), None)
    assert result["timed_out"] == 2 and result["completed_jobs"] == 2
    assert spy.inner.list_active_executions() == [] and spy.inner.list_active_jobs() == []
