"""Group records expire when their job ends (COMPLETED by the sweeper, CANCELED, ABORTED), on both
repositories: each group of the job gets `expires_at` = the end + GROUP_TTL_SECONDS, other jobs' groups
keep none. On DynamoDB the item (and the marker listing it under its job) carries the table's TTL
attribute, which ensure_table enables as infra/template.yaml does."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.dynamo import DynamoRepository
from chalicelib.adapters.memory import MemoryStorage
from chalicelib.adapters.provision import TTL_ATTRIBUTE, ensure_table
from chalicelib.domain import executions as ex
from chalicelib.domain import group as rules
from chalicelib.domain.models import Execution, bumped
from chalicelib.services import groups
from chalicelib.services.abort import check_abort
from chalicelib.services.jobs import cancel_job
from chalicelib.services.sweep import sweep

from .test_repository_contract import Sink, job

END = 1_796_000_000.0


def with_groups(repo, *job_ids: str) -> None:
    for job_id in job_ids:
        repo.create_job(job(job_id), [Execution(execution_id=f"ex-{job_id}", job_id=job_id, epn="dev-1",
                                                state=ex.QUEUED, stream=1, mode="block", created_at=END - 5,
                                                last_activity=END - 5)])
        for model in ("m1", "m2"):
            repo.create_group(rules.new_group(repo.get_job(job_id), model, 1.0))


def expiries(repo, job_id: str) -> dict[str, float | None]:
    return {g.model: g.expires_at for g in repo.job_groups(job_id)}


def end_by_sweep(repo, job_id: str) -> None:
    execution = repo.get_execution(f"ex-{job_id}")
    repo.save_execution(bumped(execution, state=ex.SUCCEEDED))
    repo.add_job_counts(job_id, {"fanout_complete": 1})
    assert sweep(repo, MemoryStorage(), Sink(), END).completed_jobs == 1


def end_by_abort(repo, job_id: str) -> None:
    repo.save_job(bumped(repo.get_job(job_id), abort_min_executed=1, abort_percent=1))
    execution = repo.get_execution(f"ex-{job_id}")
    repo.save_execution(bumped(execution, state=ex.FAILED))
    assert check_abort(repo, Sink(), job_id, END)


@pytest.mark.parametrize(("ending", "state"), [
    (end_by_sweep, "COMPLETED"),
    (lambda repo, job_id: cancel_job(repo, Sink(), END, job_id), "CANCELED"),
    (end_by_abort, "ABORTED"),
])
def test_an_ended_jobs_groups_expire(repo, ending, state) -> None:
    with_groups(repo, "job-1", "job-2")
    assert expiries(repo, "job-1") == {"m1": None, "m2": None}
    ending(repo, "job-1")
    assert repo.get_job("job-1").state == state
    assert expiries(repo, "job-1") == {"m1": END + groups.GROUP_TTL_SECONDS, "m2": END + groups.GROUP_TTL_SECONDS}
    assert expiries(repo, "job-2") == {"m1": None, "m2": None}  # a running job's groups stay
    assert groups.expire(repo, "job-1", END + 50) == 0  # once: a second end changes nothing
    assert repo.get_group("job-1.m1").expires_at == END + groups.GROUP_TTL_SECONDS


def test_a_job_without_groups_ends_as_before(repo) -> None:
    repo.create_job(job("job-3"), [])
    assert repo.job_groups("job-3") == [] and groups.expire(repo, "job-3", END) == 0
    assert cancel_job(repo, Sink(), END, "job-3").state == "CANCELED"


@pytest.fixture
def dynamo():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        ensure_table(client, "groups")
        yield client, DynamoRepository(client, "groups")


def test_the_dynamodb_items_carry_the_tables_ttl_attribute(dynamo) -> None:
    client, repo = dynamo
    with_groups(repo, "job-1")
    keys = [{"pk": {"S": "GROUP#job-1.m1"}, "sk": {"S": "GROUP"}},
            {"pk": {"S": "JOB#job-1"}, "sk": {"S": "GROUP#job-1.m1"}}]
    assert all(TTL_ATTRIBUTE not in client.get_item(TableName="groups", Key=k)["Item"] for k in keys)
    cancel_job(repo, Sink(), END, "job-1")
    expected = {"N": str(int(END + groups.GROUP_TTL_SECONDS))}
    assert [client.get_item(TableName="groups", Key=k)["Item"][TTL_ATTRIBUTE] for k in keys] == [expected] * 2
    ttl = client.describe_time_to_live(TableName="groups")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", TTL_ATTRIBUTE)
    ensure_table(client, "groups")  # again: nothing to change
    assert client.describe_time_to_live(TableName="groups")["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
