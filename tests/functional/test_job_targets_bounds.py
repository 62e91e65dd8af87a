"""POST /jobs with 10,000 explicit targets on moto (issue 13), the bounds: no DynamoDB item the request
writes grows with the list (the job item holds no EPN; the list is chunk items of at most fanout.CHUNK
EPNs), the answer is small, the fan-out messages are small, and the request never lists the fleet (no
Scan, no Query: the targets are read by key, in batches). Worst case: every EPN 64 characters. The time
it takes is a figure of `python -m bench.jobpost`, not asserted here."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bench.jobpost import Recording, item_bytes
from bench.jobpost import written as written_items
from chalicelib.adapters.dynamo import DynamoRepository
from chalicelib.domain.models import Device
from chalicelib.services import fanout, jobs

from .fakes import AtomicRequests
from .flows import publish

N = jobs.MAX_TARGETS
EPN_CHARS = 64  # the longest EPN ID (otaformat.ids)
ITEM_BOUND = 8 * 1024  # bytes: a chunk of CHUNK EPNs of 64 characters and its keys, with room to spare
ANSWER_BOUND = 4 * 1024
pytestmark = pytest.mark.slow  # 10,000 devices written to moto first: about 40 s


@pytest.fixture
def env(env):
    return {**env, "OTA_FANOUT_QUEUE": "ota-fanout"}


def test_ten_thousand_explicit_targets_stay_bounded(api, world):
    repo = world.container.repository
    epns = [f"{n:05d}-".ljust(EPN_CHARS, "x") for n in range(N)]
    for epn in epns:
        repo.create_device(Device(epn=epn, model="model-a", state="REGISTERED", token_sha256="0" * 64,
                                  token_expires=0.0, created_at=0.0, apps={"demo": "1.0.0"}))
    package = publish(api, world, ec.generate_private_key(ec.SECP256R1()), app="demo", version="1.1.0", size=3000)
    spy = Recording(AtomicRequests(world.session.client("dynamodb")))
    world.container.repository = DynamoRepository(spy, world.settings.table_name)

    made = api.call("POST", "/jobs", {"package_id": package, "targets": {"devices": epns}})

    assert made.status_code == 201, made.json
    job_id = made.json["job_id"]
    assert made.json["target_spec"] == {"devices": N} and made.json["targets_resolved"] == 0  # fan-out: later
    assert len(made.body) < ANSWER_BOUND and not any(e in made.body.decode() for e in epns[:3])
    operations = Counter(name for name, _ in spy.requests)
    assert operations["scan"] == 0, operations  # the fleet is never listed: a query reads the job's own items
    queried = [json.dumps(kwargs["ExpressionAttributeValues"]) for name, kwargs in spy.requests if name == "query"]
    assert all(job_id in q for q in queried), queried
    assert operations["batch_get_item"] == -(-N // 100), operations  # the targets, read by key
    written = written_items(spy.requests)
    job_item = next(i for i in written if i["sk"]["S"] == "JOB")
    chunks = [i for i in written if i["sk"]["S"].startswith("TARGETS#")]
    assert item_bytes(job_item) < 4096 and not any(e in json.dumps(job_item) for e in epns)
    assert len(chunks) == -(-N // fanout.CHUNK) and sum(len(json.loads(c["epns"]["S"])) for c in chunks) == N
    assert max(item_bytes(i) for i in written) < ITEM_BOUND
    sqs = world.session.client("sqs")
    url = sqs.get_queue_url(QueueName="ota-fanout")["QueueUrl"]
    bodies: list[str] = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
        bodies.extend(m["Body"] for m in got)
    assert len(bodies) == len(chunks) and max(len(b) for b in bodies) < 256  # a chunk's number, not its EPNs
