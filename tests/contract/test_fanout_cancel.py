"""A job canceled while a fan-out batch runs keeps no live execution, on both repositories.

The batch reads the job (ACTIVE), then the operator cancels it, then the batch writes: an injected
repository runs the cancel right after the fan-out's read of the job, so the interleaving is the same
every run (no threads, no sleeps). Executions are created only while the job is ACTIVE (a condition of
the repository's write), the cancel marks the job before it lists the executions, and the sweeper
cancels what an operation's listing missed."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryStorage
from chalicelib.domain import executions as ex
from chalicelib.domain.models import Device, Execution, Job, Package, bumped
from chalicelib.services import fanout
from chalicelib.services.jobs import cancel_job
from chalicelib.services.sweep import sweep

from .test_repository_contract import Sink

EPNS = [f"dev-{n}" for n in range(5)]


class CancelAfterRead:
    """The repository, but the first read of `job_id` is followed by the operator's cancel of that job:
    the caller goes on with the job it read (ACTIVE) while the stored one is CANCELED."""

    def __init__(self, repo: Any, publisher: Sink, job_id: str) -> None:
        self._repo, self._publisher, self._job_id = repo, publisher, job_id
        self.canceled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)

    def get_job(self, job_id: str) -> Job | None:
        job = self._repo.get_job(job_id)
        if job_id == self._job_id and not self.canceled:
            self.canceled = True
            cancel_job(self._repo, self._publisher, 2.0, job_id)
        return job


def stored_job(repo, model_target: bool) -> Job:
    for epn in EPNS:
        repo.create_device(Device(epn=epn, model="m", state="REGISTERED", token_sha256="0" * 64, token_expires=0.0,
                                  created_at=0.0))
    repo.create_package(Package(upload_id="up-1", state="AVAILABLE", declared_size=10, created_at=0.0, app="demo",
                                version_label="1.1.0", models=("m",), size=10, sha256="a" * 64,
                                repository_key="packages/x", envelope={}))
    job = Job(job_id="job-1", upload_id="up-1", mode="block", block_size=1024, window=4, stall_seconds=60,
              total_seconds=600, targets=(), target_spec={"model": "m"} if model_target else {}, state="ACTIVE",
              created_at=0.0, app="demo", app_version="1.1.0", package_size=10, package_sha256="a" * 64,
              repository_key="packages/x", block_count=1, target_count=0 if model_target else len(EPNS))
    repo.create_job(job, ())
    if not model_target:
        repo.put_job_targets(job.job_id, [EPNS])
    return job


def live(repo, job_id: str) -> list[Execution]:
    return [e for e in repo.list_job_executions(job_id) if not ex.is_terminal(e.state)]


class NoQueue:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, messages: Any) -> None:
        self.sent.extend(messages)


@pytest.mark.parametrize("message", [{"job_id": "job-1", "chunk": 0},
                                     {"job_id": "job-1", "model": "m", "cursor": None}])
def test_a_cancel_between_the_batchs_read_and_its_writes_leaves_nothing_live(repo, message) -> None:
    job = stored_job(repo, "model" in message)
    publisher = Sink()
    racing = CancelAfterRead(repo, publisher, job.job_id)
    created = fanout.handle(racing, MemoryStorage(), publisher, NoQueue(), 1.0, message)
    assert racing.canceled and repo.get_job(job.job_id).state == "CANCELED"
    assert created == 0 and live(repo, job.job_id) == [] and repo.list_job_executions(job.job_id) == []
    assert not any(topic.endswith("/job") for topic, _ in publisher.sent)  # no job document went out
    assert not {k: v for k, v in repo.job_counts(job.job_id).items() if v and k != "fanout_complete"}


def test_without_the_cancel_the_same_batch_creates_them_all(repo) -> None:
    job = stored_job(repo, False)
    publisher = Sink()
    assert fanout.handle(repo, MemoryStorage(), publisher, NoQueue(), 1.0, {"job_id": job.job_id, "chunk": 0}) == 5
    assert len(live(repo, job.job_id)) == 5 and sum(t.endswith("/job") for t, _ in publisher.sent) == 5
    cancel_job(repo, publisher, 2.0, job.job_id)  # after the batch: the cancel's listing finds them
    assert live(repo, job.job_id) == []


@pytest.mark.parametrize("state", ["CANCELED", "ABORTED", "COMPLETED"])
def test_no_execution_is_created_for_a_job_that_is_not_active(repo, state) -> None:
    job = stored_job(repo, False)
    repo.save_job(bumped(job, state=state))
    execution = Execution(execution_id="ex-late", job_id=job.job_id, epn="dev-0", state=ex.QUEUED, stream=1,
                          mode="block", created_at=1.0, last_activity=1.0)
    assert repo.create_execution(execution) is False
    assert repo.get_execution("ex-late") is None and repo.job_counts(job.job_id).get("QUEUED", 0) == 0
    assert repo.create_execution(Execution(**{**execution.__dict__, "job_id": "job-missing"})) is False


def test_the_sweeper_cancels_what_a_canceled_jobs_listing_missed(repo) -> None:
    job = stored_job(repo, False)
    publisher = Sink()
    fanout.handle(repo, MemoryStorage(), publisher, NoQueue(), 1.0, {"job_id": job.job_id, "chunk": 0})
    repo.save_job(bumped(repo.get_job(job.job_id), state="CANCELED"))  # as if its listing had missed them all
    assert len(live(repo, job.job_id)) == 5
    publisher.sent.clear()
    sweep(repo, MemoryStorage(), publisher, 3.0)
    assert live(repo, job.job_id) == []
    left = repo.list_job_executions(job.job_id)
    assert {(e.state, e.timeline[-1].reason) for e in left} == {(ex.CANCELED, "job canceled")}
    assert sum(topic.endswith("/job") for topic, _ in publisher.sent) == 5  # a Cancel to each device
