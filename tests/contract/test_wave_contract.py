"""Repository contract of staged rollouts (both repositories): wave members stored by ordinal and read
by range, late members, per-wave counters kept by execution writes, WAITING executions outside the
sweeper's active list; and the fan-out + release on top of each repository."""

from __future__ import annotations

import pytest

from chalicelib.adapters.fanout import InlineFanoutQueue
from chalicelib.adapters.memory import MemoryStorage
from chalicelib.domain import executions as ex
from chalicelib.domain.models import Device, Execution, Job, Package, bumped
from chalicelib.services import fanout, waves

from ..functional.fakes import RecordingPublisher


def execution(eid: str, state: str = ex.WAITING, wave: int | None = 1, job_id: str = "job-1") -> Execution:
    return Execution(execution_id=eid, job_id=job_id, epn=f"dev-{eid}", state=state, stream=5, mode="block",
                     created_at=1.0, last_activity=1.0, wave=wave)


def active_job(repo, job_id: str = "job-1") -> None:
    """Executions are created only while their job is ACTIVE (the fan-out's cancel rule)."""
    repo.create_job(Job(job_id=job_id, upload_id="up-1", mode="block", block_size=1024, window=4, stall_seconds=60,
                        total_seconds=600, targets=(), target_spec={}, state="ACTIVE", created_at=0.0, app="demo",
                        app_version="1.1.0", package_size=10, package_sha256="a" * 64, repository_key="packages/x",
                        block_count=1, wave_size=1, wave_gate="pause"), ())


def fleet(repo, epns) -> None:
    """Registered devices of model m and the package they take."""
    for epn in epns:
        repo.create_device(Device(epn=epn, model="m", state="REGISTERED", token_sha256="0" * 64,
                                  token_expires=0.0, created_at=0.0))
    repo.create_package(Package(upload_id="up-1", state="AVAILABLE", declared_size=10, created_at=0.0, app="demo",
                                version_label="1.1.0", models=("m",), size=10, sha256="a" * 64,
                                repository_key="packages/x", envelope={}))


@pytest.mark.parametrize(("first", "end", "expected"), [
    (0, 3, ["d0", "d1", "d2"]),
    (2, 7, ["d2", "d3", "d4", "d5", "d6"]),  # across two items
    (5, 6, ["d5"]),
    (9, 20, ["d9"]),
    (10, 20, []),
    (3, 3, []),
])
def test_wave_members_by_ordinal_range(repo, first, end, expected):
    repo.put_wave_members("job-1", 0, ["d0", "d1", "d2", "d3", "d4"])
    repo.put_wave_members("job-1", 5, ["d5", "d6", "d7", "d8", "d9"])
    repo.put_wave_members("job-2", 0, ["other"])
    assert repo.wave_members("job-1", first, end) == expected


def test_wave_members_are_idempotent_and_long_items_split(repo):
    many = [f"e{n:03d}" for n in range(250)]
    repo.put_wave_members("job-1", 0, many)
    repo.put_wave_members("job-1", 0, many)  # a redelivered fan-out item
    assert repo.wave_members("job-1", 0, 1000) == many
    assert repo.wave_members("job-1", 99, 102) == many[99:102] and repo.wave_members("job-1", 249, 251) == ["e249"]


def test_late_members(repo):
    assert repo.late_members("job-1") == []
    repo.put_late_member("job-1", "late-b")
    repo.put_late_member("job-1", "late-a")
    repo.put_late_member("job-1", "late-a")
    repo.put_late_member("job-2", "late-c")
    assert repo.late_members("job-1") == ["late-a", "late-b"]


def test_per_wave_counters_follow_every_execution_write(repo):
    active_job(repo)
    assert repo.create_execution(execution("a", wave=0, state=ex.QUEUED))
    assert repo.create_execution(execution("b", wave=1))
    assert repo.create_execution(execution("c", wave=None))  # a percent job's: its wave comes with the release
    assert not repo.create_execution(execution("b", wave=1))  # once
    b = repo.get_execution("b")
    repo.save_execution(bumped(b, state=ex.QUEUED))
    c = repo.get_execution("c")
    repo.save_execution(bumped(c, state=ex.QUEUED, wave=1))
    c = repo.get_execution("c")
    repo.save_execution(bumped(c, state=ex.FAILED))
    counts = {w: {s: n for s, n in c.items() if n} for w, c in repo.wave_counts("job-1", 0, 10).items()}
    assert counts == {0: {ex.QUEUED: 1}, 1: {ex.QUEUED: 1, ex.FAILED: 1}}
    assert set(repo.wave_counts("job-1", 1, 2)) == {1} and repo.wave_counts("job-1", 2, 5) == {}
    assert repo.job_counts("job-1")[ex.WAITING] == 0 and repo.job_counts("job-1")[ex.QUEUED] == 2


@pytest.mark.parametrize("raced", [(), ("m3",), ("m0", "m9")])
def test_a_page_of_executions_is_read_and_saved_at_once_with_its_counters(repo, raced):
    # a wave's release (services/wave_release.py release_many): one read and one write for the page; an execution
    # another writer changed after the read is not overwritten (False), and the counters stay exact
    active_job(repo)
    ids = [f"m{n}" for n in range(10)]
    assert all(repo.create_executions([execution(i) for i in ids]))
    read = repo.get_executions([*ids, "absent", "m1"])
    assert sorted(e.execution_id for e in read) == ids
    for eid in raced:
        current = repo.get_execution(eid)
        repo.save_execution(bumped(current, state=ex.CANCELED))
    changes = [(e, bumped(ex.release(e, 5.0, 1) or e)) for e in read]
    saved = repo.save_executions(changes)
    assert saved == [e.execution_id not in raced for e in read]
    states = {e.execution_id: e.state for e in repo.get_executions(ids)}
    assert states == {i: ex.CANCELED if i in raced else ex.QUEUED for i in ids}
    counts = repo.job_counts("job-1")
    assert (counts[ex.QUEUED], counts[ex.WAITING], counts.get(ex.CANCELED, 0)) == (10 - len(raced), 0, len(raced))
    waves = {s: n for s, n in repo.wave_counts("job-1", 1, 2)[1].items() if n}
    assert waves == {ex.QUEUED: 10 - len(raced), **({ex.CANCELED: len(raced)} if raced else {})}
    assert sorted(e.execution_id for e in repo.list_active_executions()) == [i for i in ids if i not in raced]


def test_waiting_executions_are_not_the_sweepers_work(repo):
    active_job(repo)
    repo.create_execution(execution("w"))
    repo.create_execution(execution("q", state=ex.QUEUED))
    assert [e.execution_id for e in repo.list_active_executions()] == ["q"]
    w = repo.get_execution("w")
    repo.save_execution(bumped(ex.release(w, 5.0, 1) or w))
    assert sorted(e.execution_id for e in repo.list_active_executions()) == ["q", "w"]


def test_a_staged_fanout_then_each_wave_released(repo):
    storage, publisher = MemoryStorage(), RecordingPublisher()
    fleet(repo, [f"dev-{n}" for n in range(7)])
    repo.create_device(Device(epn="dev-x", model="other", state="REGISTERED", token_sha256="0" * 64,
                              token_expires=0.0, created_at=0.0))
    targets = ["dev-6", "dev-x", "dev-0", "dev-5", "dev-1", "dev-4", "dev-2", "dev-3"]  # the list's order
    job = Job(job_id="job-1", upload_id="up-1", mode="block", block_size=1024, window=4, stall_seconds=60,
              total_seconds=600, targets=(), target_spec={}, target_count=len(targets), state="ACTIVE",
              created_at=0.0, app="demo", app_version="1.1.0", package_size=10, package_sha256="a" * 64,
              repository_key="packages/x", block_count=1, wave_size=3, wave_gate="pause", current_wave=0,
              wave_started_at=0.0)
    repo.create_job(job, ())
    clock = [1.0]
    queue = InlineFanoutQueue(lambda m, q: fanout.handle(repo, storage, publisher, q, clock[0], m))
    fanout.start(repo, queue, job, targets)
    states = {e.epn: (e.state, e.wave) for e in repo.list_job_executions("job-1")}
    assert states == {"dev-6": (ex.QUEUED, 0), "dev-x": (ex.SKIPPED, None), "dev-0": (ex.QUEUED, 0),
                      "dev-5": (ex.QUEUED, 0), "dev-1": (ex.WAITING, 1), "dev-4": (ex.WAITING, 1),
                      "dev-2": (ex.WAITING, 1), "dev-3": (ex.WAITING, 2)}
    assert repo.get_job("job-1").waves_total == 3 and repo.wave_members("job-1", 3, 6) == ["dev-1", "dev-4", "dev-2"]
    assert publisher.job_documents("dev-1") == [] and len(publisher.job_documents("dev-6")) == 1
    clock[0] = 50.0
    started = waves.start_wave(repo, queue, "job-1", 1, 50.0)
    assert started is not None and started.current_wave == 1 and started.wave_started_at == 50.0
    assert waves.start_wave(repo, queue, "job-1", 1, 51.0) is None  # a second sweep does not start it again
    assert [len(publisher.job_documents(e)) for e in ("dev-1", "dev-4", "dev-2", "dev-3")] == [1, 1, 1, 0]
    released = repo.get_execution(fanout.execution_id("job-1", "dev-4"))
    assert released.state == ex.QUEUED and released.released_at == 50.0 and released.wave == 1
    counted = {w: c.get(ex.QUEUED, 0) for w, c in repo.wave_counts("job-1", 0, 3).items()}
    assert counted == {0: 3, 1: 3, 2: 0}


def test_a_percent_fanout_sizes_its_waves_and_starts_wave_0_when_done(repo):
    storage, publisher = MemoryStorage(), RecordingPublisher()
    fleet(repo, [f"dev-{n:02d}" for n in range(11)])
    job = Job(job_id="job-2", upload_id="up-1", mode="block", block_size=1024, window=4, stall_seconds=60,
              total_seconds=600, targets=(), target_spec={"model": "m"}, state="ACTIVE", created_at=0.0, app="demo",
              app_version="1.1.0", package_size=10, package_sha256="a" * 64, repository_key="packages/x",
              block_count=1, wave_percent=25, wave_gate="interval", wave_delay=60)
    repo.create_job(job, ())
    pages: list[dict] = []

    def handle(message: dict, q: InlineFanoutQueue) -> None:
        pages.append(message)
        fanout.handle(repo, storage, publisher, q, 2.0, message, batch=4)

    fanout.start(repo, InlineFanoutQueue(handle), job, None)
    assert [p.get("offset") for p in pages if "model" in p] == [0, 4, 8]  # pages one after another
    stored = repo.get_job("job-2")
    assert (stored.wave_size, stored.waves_total, stored.current_wave) == (3, 4, 0)  # ceil(25 % of 11) = 3
    executions = repo.list_job_executions("job-2")
    assert sorted(e.wave for e in executions if e.state == ex.QUEUED) == [0, 0, 0]
    assert sum(e.state == ex.WAITING for e in executions) == 8
    assert sum(bool(publisher.job_documents(e.epn)) for e in executions) == 3


def _world(repo, devices: int, **job_fields) -> tuple[MemoryStorage, RecordingPublisher, Job, Package]:
    for n in range(devices):
        repo.create_device(Device(epn=f"dev-{n}", model="m", state="REGISTERED", token_sha256="0" * 64,
                                  token_expires=0.0, created_at=0.0))
    package = Package(upload_id="up-1", state="AVAILABLE", declared_size=10, created_at=0.0, app="demo",
                      version_label="1.1.0", models=("m",), size=10, sha256="a" * 64, repository_key="packages/x",
                      envelope={})
    repo.create_package(package)
    job = Job(job_id="job-r", upload_id="up-1", mode="block", block_size=1024, window=4, stall_seconds=60,
              total_seconds=600, targets=(), target_spec={"model": "m"}, state="ACTIVE", created_at=0.0, app="demo",
              app_version="1.1.0", package_size=10, package_sha256="a" * 64, repository_key="packages/x",
              block_count=1, wave_gate="pause", **job_fields)
    repo.create_job(job, ())
    return MemoryStorage(), RecordingPublisher(), job, package


def test_a_wave_started_while_the_fanout_created_its_members_is_still_released(repo):
    storage, publisher, job, package = _world(repo, 4, wave_size=2, current_wave=0, wave_started_at=0.0)
    stale = job  # the fan-out item read the job before the sweeper started wave 1 ...
    repo.save_job(bumped(job, current_wave=1, wave_started_at=5.0))  # ... and found no member to release
    targets = [(d.epn, d) for d in repo.get_devices([f"dev-{n}" for n in range(4)])]
    fanout.fan_out(repo, storage, publisher, 6.0, stale, package, targets, waves.Placement(stale, 0))
    states = {e.epn: (e.state, e.wave) for e in repo.list_job_executions("job-r")}
    assert states == {"dev-0": (ex.QUEUED, 0), "dev-1": (ex.QUEUED, 0), "dev-2": (ex.QUEUED, 1),
                      "dev-3": (ex.QUEUED, 1)}  # the fan-out saw the new wave when it read the job again
    assert all(len(publisher.job_documents(f"dev-{n}")) == 1 for n in range(4))


def test_a_device_registered_before_a_percent_jobs_wave_0_waits_for_it(repo):
    storage, publisher, _, _ = _world(repo, 1, wave_percent=50, continuous=True)
    assert fanout.on_registered(repo, storage, publisher, 1.0, "dev-0") == 1
    assert repo.get_execution(fanout.execution_id("job-r", "dev-0")).state == ex.WAITING
    assert repo.late_members("job-r") == ["dev-0"] and publisher.job_documents("dev-0") == []
    queue = InlineFanoutQueue(lambda m, q: fanout.handle(repo, storage, publisher, q, 2.0, m))
    assert waves.fanout_finished(repo, queue, "job-r", 0, 2.0)  # an empty fan-out: wave 0 of one device
    released = repo.get_execution(fanout.execution_id("job-r", "dev-0"))
    assert (released.state, released.wave) == (ex.QUEUED, 0) and len(publisher.job_documents("dev-0")) == 1


def test_a_percent_wave_is_not_finished_before_its_release_is_done(repo):
    storage, publisher, job, _ = _world(repo, 4, wave_percent=50)
    held: list[dict] = []

    def handle(message: dict, q: InlineFanoutQueue) -> None:
        if "wave" in message:
            held.append(message)  # a release waiting in the queue
        else:
            fanout.handle(repo, storage, publisher, q, 1.0, message)

    queue = InlineFanoutQueue(handle)
    fanout.start(repo, queue, job, None)
    assert repo.get_job("job-r").current_wave == 0 and len(held) == 1
    assert waves.start_due_waves(repo, publisher, 2.0, queue).started == 0  # wave 0 has no counted member yet
    for message in held:
        fanout.handle(repo, storage, publisher, queue, 3.0, message)
    first = [e for e in repo.list_job_executions("job-r") if e.state == ex.QUEUED]
    assert len(first) == 2
    assert waves.start_due_waves(repo, publisher, 4.0, queue).started == 0  # released, still running
    for execution in first:
        repo.save_execution(bumped(execution, state=ex.SUCCEEDED))
    assert waves.start_due_waves(repo, publisher, 5.0, queue).started == 1
    assert repo.get_job("job-r").current_wave == 1


@pytest.mark.parametrize(("pause", "next_started"), [(0, True), (60, False)])
def test_the_last_execution_of_a_wave_moves_the_job_on_without_a_sweep(repo, pause, next_started):
    # device messages ending the current wave's last execution take the job's next step at once: with
    # pause 0 the next wave starts (its devices get their job documents), with a pause its end is recorded
    from chalicelib.services.device_messages import DeviceMessage, handle_batch
    from otaformat import messages

    storage, publisher = MemoryStorage(), RecordingPublisher()
    fleet(repo, [f"dev-{n}" for n in range(4)])
    targets = [f"dev-{n}" for n in range(4)]
    repo.create_job(Job(job_id="job-1", upload_id="up-1", mode="block", block_size=1024, window=4, stall_seconds=60,
                        total_seconds=600, targets=(), target_spec={}, target_count=4, state="ACTIVE", created_at=0.0,
                        app="demo", app_version="1.1.0", package_size=10, package_sha256="a" * 64,
                        repository_key="packages/x", block_count=1, wave_size=2, wave_gate="pause", wave_delay=pause,
                        current_wave=0, wave_started_at=0.0), ())
    queue = InlineFanoutQueue(lambda m, q: fanout.handle(repo, storage, publisher, q, 1.0, m))
    fanout.start(repo, queue, repo.get_job("job-1"), targets)

    def succeed(epn: str, at: float) -> None:
        doc = publisher.job_documents(epn)[-1]
        status = messages.Status(doc.execution_id, "SUCCEEDED", None, None, 9, 0)
        handle_batch(repo, storage, publisher, [DeviceMessage(epn, "status", messages.encode(status), at)],
                     queue=queue)

    succeed("dev-0", 5.0)
    assert repo.get_job("job-1").current_wave == 0  # dev-1 still runs
    succeed("dev-1", 6.0)
    job = repo.get_job("job-1")
    assert (job.current_wave == 1) is next_started
    assert bool(publisher.job_documents("dev-2")) is next_started
    assert job.wave_finished_at == (None if next_started else 6.0)
