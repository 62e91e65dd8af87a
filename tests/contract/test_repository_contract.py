"""Repository contract: creates conflict, saves are optimistic, listings, idempotent job creation, and
the device-message service's ack accounting on top of each repository."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from chalicelib.domain import executions as ex
from chalicelib.domain.errors import ConcurrentUpdate, Conflict, InvalidInput
from chalicelib.domain.models import Device, Execution, Job, Package, PublisherKey, bumped
from chalicelib.services.device_messages import DeviceMessage, handle_batch
from otaformat import wire


def device(epn="dev-1", model="model-a"):
    return Device(epn=epn, model=model, state="PREAUTHORIZED", token_sha256="0" * 64, token_expires=10.0,
                  created_at=1.0, apps={"demo": "1.0.0"})


def job(job_id="job-1", key=None, body="b", blocks=8):
    return Job(job_id=job_id, upload_id="up-1", mode="block", block_size=256, window=4, stall_seconds=60,
               total_seconds=600, targets=("dev-1",), target_spec={"devices": ["dev-1"]}, state="ACTIVE",
               created_at=1.0, app="demo", app_version="1.1.0", package_size=256 * blocks, package_sha256="a" * 64,
               repository_key="packages/demo/1.1.0/x.otapkg", block_count=blocks, body_sha256=body,
               idempotency_key=key)


def execution(job_id="job-1", eid="ex-1", epn="dev-1", created=1.0):
    return Execution(execution_id=eid, job_id=job_id, epn=epn, state=ex.QUEUED, stream=5, mode="block",
                     created_at=created, last_activity=created)


def test_device_create_get_save_list(repo):
    repo.create_device(device())
    with pytest.raises(Conflict):
        repo.create_device(device())
    stored = repo.get_device("dev-1")
    assert stored == device()
    repo.save_device(bumped(stored, state="REGISTERED"))
    assert repo.get_device("dev-1").state == "REGISTERED" and repo.get_device("dev-1").version == 2
    with pytest.raises(ConcurrentUpdate):
        repo.save_device(bumped(stored, state="DEREGISTERED"))  # stale version
    repo.create_device(device("dev-2", "model-b"))
    assert [d.epn for d in repo.list_devices()] == ["dev-1", "dev-2"]
    assert [d.epn for d in repo.list_devices("model-b")] == ["dev-2"]
    assert repo.get_device("nobody") is None


def test_keys(repo):
    key = PublisherKey(key_id="k1", name="n", public_key_pem="pem", created_at=1.0)
    repo.put_key(key)
    with pytest.raises(Conflict):
        repo.put_key(key)
    assert repo.get_key("k1") == key and repo.list_keys() == [key]
    assert repo.delete_key("k1") is True and repo.delete_key("k1") is False
    assert repo.list_keys() == []


def test_packages_roundtrip_every_field(repo):
    package = Package(upload_id="up-1", state="PENDING", declared_size=10, created_at=2.0)
    repo.create_package(package)
    done = bumped(package, state="AVAILABLE", reasons=("a", "b"), models=("m1", "m2"), envelope={"manifest": {"x": 1}},
                  size=9, sha256="f" * 64, app="demo", version_label="1.0.0")
    repo.save_package(done)
    assert repo.get_package("up-1") == done
    with pytest.raises(ConcurrentUpdate):
        repo.save_package(done)
    repo.create_package(Package(upload_id="up-0", state="PENDING", declared_size=1, created_at=1.0))
    assert [p.upload_id for p in repo.list_packages()] == ["up-0", "up-1"]


def test_job_and_executions(repo):
    executions = [execution(eid=f"ex-{i}", epn=f"dev-{i}", created=float(i)) for i in range(30)]
    assert repo.create_job(job(), executions) == job()
    assert repo.get_job("job-1") == job()
    assert len(repo.list_job_executions("job-1")) == 30
    assert [e.execution_id for e in repo.list_device_executions("dev-3")] == ["ex-3"]
    first = repo.get_execution("ex-0")
    repo.save_execution(bumped(first, state=ex.IN_PROGRESS))
    with pytest.raises(ConcurrentUpdate):
        repo.save_execution(bumped(first, state=ex.FAILED))
    assert repo.get_execution("ex-0").state == ex.IN_PROGRESS
    repo.save_job(bumped(job(), state="CANCELED"))
    assert [j.state for j in repo.list_jobs()] == ["CANCELED"]


def test_idempotent_job_creation_returns_the_stored_job(repo):
    stored = repo.create_job(job("job-1", key="k"), [execution()])
    again = repo.create_job(job("job-2", key="k", body="other"), [execution("job-2", "ex-2")])
    assert stored.job_id == again.job_id == "job-1" and again.body_sha256 == "b"
    assert repo.get_job("job-2") is None and repo.get_execution("ex-2") is None


def test_concurrent_creates_with_one_key_store_one_job(repo):
    results = []
    gate = threading.Barrier(20)

    def create(n):
        gate.wait()
        results.append(repo.create_job(job(f"job-{n}", key="same"), [execution(f"job-{n}", f"ex-{n}")]).job_id)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 20 and len(set(results)) == 1
    assert len(repo.list_jobs()) == 1


def test_concurrent_saves_of_one_version_let_exactly_one_win(repo):
    repo.create_job(job(), [execution()])
    base = repo.get_execution("ex-1")
    wins, losses = [], []
    gate = threading.Barrier(10)

    def save(n):
        gate.wait()
        try:
            repo.save_execution(bumped(base, step=f"s{n}"))
            wins.append(n)
        except ConcurrentUpdate:
            losses.append(n)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(wins) == 1 and len(losses) == 9


class BlockStorage:
    def read_range(self, key, start, length):
        return bytes(length)


class Sink:
    def __init__(self):
        self.sent = []

    def publish(self, topic, payload):
        self.sent.append((topic, payload))

    def flush(self):
        pass


def test_acks_from_concurrent_batches_never_double_count(repo):
    """Two consumers apply overlapping, duplicated acks at once: conditional writes keep counts exact."""
    repo.create_job(replace(job(blocks=64), window=64), [execution()])
    base = repo.get_execution("ex-1")
    repo.save_execution(bumped(replace(base, state=ex.IN_PROGRESS)))
    sink = Sink()
    every_block = wire.encode_request(wire.make_request("ex-1", 5, range(64)))
    handle_batch(repo, BlockStorage(), sink, [DeviceMessage("dev-1", "get", every_block, 1.0)])
    assert repo.get_execution("ex-1").transfer.sent_count == 64  # acks count only blocks that were sent

    def ack(indices):
        payload = wire.encode_ack(wire.make_ack("ex-1", 5, indices, 64))
        return DeviceMessage("dev-1", "ack", payload, 2.0)

    batches = [[ack(set(range(n, n + 8))), ack(set(range(n, n + 8)))] for n in range(0, 64, 4)]
    gate = threading.Barrier(len(batches))

    def run(batch):
        gate.wait()
        handle_batch(repo, BlockStorage(), sink, batch)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    final = repo.get_execution("ex-1")
    assert final.transfer.acked_count == 64 and final.transfer.complete


def test_active_listings_hold_only_unfinished_work(repo):
    repo.create_job(job("job-1"), [execution("job-1", f"ex-{i}", f"dev-{i}") for i in range(12)])
    repo.create_job(job("job-2"), [execution("job-2", "ex-x", "dev-x")])
    assert [j.job_id for j in repo.list_active_jobs()] == ["job-1", "job-2"]
    assert len(repo.list_active_executions()) == 13
    for i in range(12):
        current = repo.get_execution(f"ex-{i}")
        state = ex.IN_PROGRESS if i < 4 else ex.SUCCEEDED if i < 8 else ex.CANCELED
        repo.save_execution(bumped(current, state=state))
    active = repo.list_active_executions()
    assert sorted(e.execution_id for e in active) == ["ex-0", "ex-1", "ex-2", "ex-3", "ex-x"]
    assert {e.state for e in active} == {ex.IN_PROGRESS, ex.QUEUED}
    assert all(isinstance(e, Execution) and e.version >= 1 for e in active)
    back = repo.get_execution("ex-9")
    repo.save_execution(bumped(back, state=ex.QUEUED))  # a state back to active (a retry) re-enters the list
    assert "ex-9" in {e.execution_id for e in repo.list_active_executions()}
    repo.save_job(bumped(repo.get_job("job-2"), state="COMPLETED"))
    repo.save_job(bumped(repo.get_job("job-1"), state="ABORTED"))
    assert repo.list_active_jobs() == []
    assert len(repo.list_jobs()) == 2


def _walk(fetch, limit):
    """Every item of a paged listing, page by page; asserts no page is larger than asked."""
    items, cursor, pages = [], None, 0
    while True:
        page = fetch(limit, cursor)
        assert len(page.items) <= limit
        items.extend(page.items)
        pages += 1
        if page.next_cursor is None:
            return items, pages
        cursor = page.next_cursor


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_listings_page_in_a_stable_order(repo, limit):
    for n in range(7):
        repo.create_device(device(f"dev-{n}", "model-a" if n % 3 else "model-b"))
        repo.create_package(Package(upload_id=f"up-{n}", state="PENDING", declared_size=1, created_at=float(n % 2)))
    repo.create_job(job(), [execution(eid=f"ex-{n}", epn=f"dev-{n}", created=float(n)) for n in range(7)])
    listings = {
        "devices": (lambda lim, cur: repo.devices_page(None, lim, cur), [f"dev-{n}" for n in range(7)]),
        "model": (lambda lim, cur: repo.devices_page("model-a", lim, cur), None),
        "packages": (lambda lim, cur: repo.packages_page(lim, cur), None),
        "executions": (lambda lim, cur: repo.job_executions_page("job-1", lim, cur), [f"dev-{n}" for n in range(7)]),
    }
    for name, (fetch, order) in listings.items():
        items, pages = _walk(fetch, limit)
        ident = [getattr(i, "epn", None) or getattr(i, "upload_id", None) for i in items]
        assert _walk(fetch, limit)[0] == items, name  # stable
        assert len(set(ident)) == len(ident), name  # nothing twice
        assert pages == max(1, -(-len(items) // limit)), name  # no empty last page
        if order is not None:
            assert ident == order, name
    model_a = sorted(i.epn for i in _walk(listings["model"][0], limit)[0])
    assert model_a == sorted(d.epn for d in repo.list_devices() if d.model == "model-a")
    packages = [p.upload_id for p in _walk(listings["packages"][0], limit)[0]]
    assert packages == [p.upload_id for p in sorted(repo.list_packages(), key=lambda p: (p.created_at, p.upload_id))]


@pytest.mark.parametrize("tamper", ["", "!!!", "e30", "eyJwIjoiREVWSUNFUyJ9", "a" * 3000])
def test_tampered_or_foreign_cursors_are_refused(repo, tamper):
    for n in range(3):
        repo.create_device(device(f"dev-{n}"))
    foreign = repo.devices_page(None, 1, None).next_cursor  # a cursor of the all-devices listing
    assert foreign is not None
    for cursor in (tamper, foreign[:-2]):
        with pytest.raises(InvalidInput):
            repo.devices_page(None, 1, cursor)
    with pytest.raises(InvalidInput):
        repo.devices_page("model-a", 1, foreign)  # not this listing's
    with pytest.raises(InvalidInput):
        repo.job_executions_page("job-1", 1, foreign)


def test_packages_by_sha256_and_counted_executions(repo):
    for n, sha in enumerate(("a" * 64, "b" * 64, "a" * 64)):
        repo.create_package(Package(upload_id=f"up-{n}", state="AVAILABLE", declared_size=1, created_at=1.0,
                                    sha256=sha, size=1))
    assert [p.upload_id for p in repo.packages_with_sha256("a" * 64)] == ["up-0", "up-2"]
    assert repo.packages_with_sha256("c" * 64) == []
    repo.create_job(job(), [])
    first = execution()
    assert repo.create_execution(first) is True
    assert repo.create_execution(replace(first, stream=9)) is False  # a redelivered fan-out batch
    assert repo.create_execution(replace(execution(eid="ex-2", epn="dev-2"), state=ex.SKIPPED)) is True
    repo.save_execution(bumped(first, state=ex.IN_PROGRESS))
    counts = repo.job_counts("job-1")
    assert {k: v for k, v in counts.items() if v} == {"targets_resolved": 2, "executions_created": 1,
                                                      "IN_PROGRESS": 1, "SKIPPED": 1}
    assert repo.get_execution("ex-1").stream == 5


@pytest.mark.parametrize("existing, size", [(set(), 3), ({1}, 3), ({0, 130}, 150), (set(), 99), (set(), 100)])
def test_create_executions_creates_each_once_and_counts_exactly(repo, existing, size):
    repo.create_job(job(), [])
    for n in existing:  # a redelivered fan-out page: some already exist
        assert repo.create_execution(execution(eid=f"ex-{n}", epn=f"dev-{n}")) is True
    batch = [replace(execution(eid=f"ex-{n}", epn=f"dev-{n}"), state=ex.SKIPPED if n % 7 == 3 else ex.QUEUED)
             for n in range(size)]
    assert repo.create_executions(batch) == [n not in existing for n in range(size)]
    assert repo.create_executions(batch[:2]) == [False, False]
    skipped = sum(1 for n in range(size) if n % 7 == 3 and n not in existing)
    counts = {k: v for k, v in repo.job_counts("job-1").items() if v}
    assert counts == {k: v for k, v in {"targets_resolved": size, "executions_created": size - skipped,
                                         ex.QUEUED: size - skipped, ex.SKIPPED: skipped}.items() if v}
    assert {e.execution_id for e in repo.list_job_executions("job-1")} == {f"ex-{n}" for n in range(size)}


def test_create_executions_counts_waves_and_creates_nothing_for_a_job_no_longer_active(repo):
    repo.create_job(job(), [])
    batch = [replace(execution(eid=f"ex-{n}", epn=f"dev-{n}"), state=ex.QUEUED if n < 3 else ex.WAITING, wave=n // 3)
             for n in range(5)]
    assert repo.create_executions(batch) == [True] * 5
    waves = {w: {s: n for s, n in c.items() if n} for w, c in repo.wave_counts("job-1", 0, 5).items()}
    assert waves == {0: {ex.QUEUED: 3}, 1: {ex.WAITING: 2}}
    stored = repo.get_job("job-1")
    repo.save_job(bumped(stored, state="CANCELED"))
    late = [execution(eid=f"ex-{n}", epn=f"dev-{n}") for n in range(5, 8)]
    assert repo.create_executions(late) == [False, False, False]
    assert repo.get_execution("ex-6") is None
