"""DynamoDB repository (single-table design): the key layout lives here and nowhere else.

Items: pk/sk primary key, three sparse indexes (gsi1 lists by collection or by job, gsi2 lists a
device's executions, gsi3 holds only what is active: ACTIVE jobs under one key and QUEUED/IN_PROGRESS
executions spread over ACTIVE_SHARDS keys; a put without gsi3 keys drops the item from it), `ver`
(optimistic concurrency, checked by condition expressions), `doc` (the entity as JSON, see
domain.models.to_record) and, on REJECTED packages only, `expires_at` (DynamoDB TTL, epoch seconds).
Remote commands and releases follow the same layout: a command (CMD#) listed under gsi1 COMMANDS, one
run per device (CMDRUN#<command>#<epn>) listed per command (gsi1), per device (gsi2 DEVCMD#) and, while
QUEUED/DELIVERED/RUNNING, in gsi3 ACTIVECMD#<shard>; a release (REL#) under gsi1 RELEASES.
Does not: business rules; those are in services.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ..domain.commands import ACTIVE as COMMAND_ACTIVE
from ..domain.errors import ConcurrentUpdate, Conflict
from ..domain.executions import ACTIVE
from ..domain.models import (
    CommandRun,
    Device,
    E,
    Execution,
    Group,
    Job,
    Package,
    PublisherKey,
    Release,
    RemoteCommand,
    from_record,
    to_record,
)

ACTIVE_SHARDS = 8  # spreads the writes of many live executions over several index partitions
# TTL (the table's TimeToLiveSpecification on `expires_at`, infra/template.yaml): a REJECTED package's
# record goes 90 days after its upload, with its quarantined object (the staging bucket's lifecycle rule).
REJECTED_TTL_SECONDS = 90 * 24 * 3600
_ROOT = {Device: "DEV", PublisherKey: "KEY", Package: "PKG", Job: "JOB", Execution: "EXEC", RemoteCommand: "CMD",
         CommandRun: "CMDRUN", Release: "REL", Group: "GROUP"}


def _id(entity: Any) -> str:
    if isinstance(entity, Device):
        return entity.epn
    if isinstance(entity, PublisherKey):
        return entity.key_id
    if isinstance(entity, Package):
        return entity.upload_id
    if isinstance(entity, Job):
        return entity.job_id
    if isinstance(entity, RemoteCommand):
        return entity.command_id
    if isinstance(entity, CommandRun):
        return f"{entity.command_id}#{entity.epn}"
    if isinstance(entity, Release):
        return entity.release_id
    if isinstance(entity, Group):
        return entity.group_id
    return entity.execution_id


def _indexes(entity: Any) -> dict[str, str]:
    if isinstance(entity, Group):
        return {}  # read by key only (services/groups.py)
    if isinstance(entity, Device):
        return {"gsi1pk": "DEVICES", "gsi1sk": entity.epn}
    if isinstance(entity, PublisherKey):
        return {"gsi1pk": "KEYS", "gsi1sk": entity.key_id}
    if isinstance(entity, Package):
        return {"gsi1pk": "PACKAGES", "gsi1sk": f"{entity.created_at:020.6f}#{entity.upload_id}"}
    if isinstance(entity, Job):
        keys = {"gsi1pk": "JOBS", "gsi1sk": f"{entity.created_at:020.6f}#{entity.job_id}"}
        if entity.state == "ACTIVE":
            keys.update(gsi3pk="ACTIVEJOB", gsi3sk=entity.job_id)
        return keys
    if isinstance(entity, Release):
        return {"gsi1pk": "RELEASES", "gsi1sk": f"{entity.created_at:020.6f}#{entity.release_id}"}
    if isinstance(entity, RemoteCommand):
        return {"gsi1pk": "COMMANDS", "gsi1sk": f"{entity.created_at:020.6f}#{entity.command_id}"}
    if isinstance(entity, CommandRun):
        keys = {"gsi1pk": f"CMDRUNS#{entity.command_id}", "gsi1sk": entity.epn,
                "gsi2pk": f"DEVCMD#{entity.epn}", "gsi2sk": f"{entity.created_at:020.6f}#{entity.command_id}"}
        if entity.state in COMMAND_ACTIVE:
            shard = zlib.crc32(entity.command_id.encode() + entity.epn.encode()) % ACTIVE_SHARDS
            keys.update(gsi3pk=f"ACTIVECMD#{shard}", gsi3sk=f"{entity.command_id}#{entity.epn}")
        return keys
    keys = {
        "gsi1pk": f"JOBEXEC#{entity.job_id}", "gsi1sk": entity.epn,
        "gsi2pk": f"DEVEXEC#{entity.epn}", "gsi2sk": f"{entity.created_at:020.6f}#{entity.execution_id}",
    }
    if entity.state in ACTIVE:
        shard = zlib.crc32(entity.execution_id.encode()) % ACTIVE_SHARDS
        keys.update(gsi3pk=f"ACTIVEEXEC#{shard}", gsi3sk=entity.execution_id)
    return keys


class DynamoRepository:
    def __init__(self, client: Any, table_name: str) -> None:
        self._db = client
        self._table = table_name

    # -- generic -----------------------------------------------------------------------------

    def _key(self, cls: type, ident: str) -> dict[str, Any]:
        root = _ROOT[cls]
        return {"pk": {"S": f"{root}#{ident}"}, "sk": {"S": root}}

    def _item(self, entity: Any) -> dict[str, Any]:
        item = self._key(type(entity), _id(entity))
        item.update({k: {"S": v} for k, v in _indexes(entity).items()})
        item["ver"] = {"N": str(entity.version)}
        item["doc"] = {"S": json.dumps(to_record(entity), separators=(",", ":"))}
        if isinstance(entity, Package) and entity.state == "REJECTED":
            item["expires_at"] = {"N": str(int(entity.created_at) + REJECTED_TTL_SECONDS)}
        return item

    def _create(self, entity: Any) -> None:
        try:
            self._db.put_item(TableName=self._table, Item=self._item(entity),
                              ConditionExpression="attribute_not_exists(pk)")
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise Conflict(f"{type(entity).__name__.lower()} {_id(entity)!r} already exists") from err
            raise

    def _save(self, entity: Any) -> None:
        try:
            self._db.put_item(TableName=self._table, Item=self._item(entity),
                              ConditionExpression="ver = :prev", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                              ExpressionAttributeValues={":prev": {"N": str(entity.version - 1)}})
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                stored = err.response.get("Item")  # the winner's item, so the caller need not read it again
                raise ConcurrentUpdate(f"{type(entity).__name__} {_id(entity)} changed concurrently",
                                       current=_load(type(entity), stored) if stored else None) from err
            raise

    def _get(self, cls: type[E], ident: str) -> E | None:
        item = self._db.get_item(TableName=self._table, Key=self._key(cls, ident), ConsistentRead=True).get("Item")
        return None if item is None else _load(cls, item)

    def _query(self, index: str, key: str, value: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table, "IndexName": index, "KeyConditionExpression": f"{key} = :v",
            "ExpressionAttributeValues": {":v": {"S": value}},
        }
        while True:
            page = self._db.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _list(self, cls: type[E], index: str, key: str, value: str) -> list[E]:
        return [_load(cls, item) for item in self._query(index, key, value)]

    # -- devices ------------------------------------------------------------------------------

    def create_device(self, device: Device) -> None:
        self._create(device)

    def get_device(self, epn: str) -> Device | None:
        return self._get(Device, epn)

    def save_device(self, device: Device) -> None:
        self._save(device)

    def list_devices(self, model: str | None = None) -> list[Device]:
        devices = self._list(Device, "gsi1", "gsi1pk", "DEVICES")
        return [d for d in devices if model is None or d.model == model]

    # -- keys ----------------------------------------------------------------------------------

    def put_key(self, key: PublisherKey) -> None:
        self._create(key)

    def get_key(self, key_id: str) -> PublisherKey | None:
        return self._get(PublisherKey, key_id)

    def list_keys(self) -> list[PublisherKey]:
        return self._list(PublisherKey, "gsi1", "gsi1pk", "KEYS")

    def delete_key(self, key_id: str) -> bool:
        answer = self._db.delete_item(TableName=self._table, Key=self._key(PublisherKey, key_id),
                                      ReturnValues="ALL_OLD")
        return "Attributes" in answer

    # -- packages --------------------------------------------------------------------------------

    def create_package(self, package: Package) -> None:
        self._create(package)

    def get_package(self, upload_id: str) -> Package | None:
        return self._get(Package, upload_id)

    def save_package(self, package: Package) -> None:
        self._save(package)

    def list_packages(self) -> list[Package]:
        return self._list(Package, "gsi1", "gsi1pk", "PACKAGES")

    # -- jobs and executions -----------------------------------------------------------------------

    def create_job(self, job: Job, executions: Sequence[Execution]) -> Job:
        if job.idempotency_key is None:
            self._create(job)
        else:
            idem = {"pk": {"S": f"IDEM#{job.idempotency_key}"}, "sk": {"S": "IDEM"}, "job_id": {"S": job.job_id}}
            absent = "attribute_not_exists(pk)"
            try:
                self._db.transact_write_items(TransactItems=[
                    {"Put": {"TableName": self._table, "Item": idem, "ConditionExpression": absent}},
                    {"Put": {"TableName": self._table, "Item": self._item(job), "ConditionExpression": absent}},
                ])
            except ClientError as err:
                if err.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                stored = self._db.get_item(TableName=self._table, Key={"pk": idem["pk"], "sk": idem["sk"]},
                                           ConsistentRead=True).get("Item")
                if stored is None:
                    raise ConcurrentUpdate("job creation raced; retry") from err
                existing = self.get_job(stored["job_id"]["S"])
                if existing is None:
                    raise ConcurrentUpdate("job creation raced; retry") from err
                return existing
        for start in range(0, len(executions), 25):
            requests = [{"PutRequest": {"Item": self._item(e)}} for e in executions[start : start + 25]]
            pending: dict[str, Any] = {self._table: requests}
            while pending:
                pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        return job

    def get_job(self, job_id: str) -> Job | None:
        return self._get(Job, job_id)

    def save_job(self, job: Job) -> None:
        self._save(job)

    def list_jobs(self) -> list[Job]:
        return self._list(Job, "gsi1", "gsi1pk", "JOBS")

    def list_active_jobs(self) -> list[Job]:
        return sorted(self._list(Job, "gsi3", "gsi3pk", "ACTIVEJOB"), key=lambda j: (j.created_at, j.job_id))

    def list_active_executions(self) -> list[Execution]:
        found = [e for shard in range(ACTIVE_SHARDS)
                 for e in self._list(Execution, "gsi3", "gsi3pk", f"ACTIVEEXEC#{shard}")]
        return sorted(found, key=lambda e: (e.job_id, e.epn))

    def get_execution(self, execution_id: str) -> Execution | None:
        return self._get(Execution, execution_id)

    def save_execution(self, execution: Execution) -> None:
        self._save(execution)

    def list_job_executions(self, job_id: str) -> list[Execution]:
        return self._list(Execution, "gsi1", "gsi1pk", f"JOBEXEC#{job_id}")

    def list_device_executions(self, epn: str) -> list[Execution]:
        return self._list(Execution, "gsi2", "gsi2pk", f"DEVEXEC#{epn}")


    # -- remote commands -------------------------------------------------------------------------

    def create_command(self, command: RemoteCommand, runs: Sequence[CommandRun]) -> None:
        self._create(command)
        for start in range(0, len(runs), 25):
            requests = [{"PutRequest": {"Item": self._item(r)}} for r in runs[start : start + 25]]
            pending: dict[str, Any] = {self._table: requests}
            while pending:
                pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def get_command(self, command_id: str) -> RemoteCommand | None:
        return self._get(RemoteCommand, command_id)

    def list_commands(self) -> list[RemoteCommand]:
        return self._list(RemoteCommand, "gsi1", "gsi1pk", "COMMANDS")

    def get_command_run(self, command_id: str, epn: str) -> CommandRun | None:
        return self._get(CommandRun, f"{command_id}#{epn}")

    def save_command_run(self, run: CommandRun) -> None:
        self._save(run)

    def list_command_runs(self, command_id: str) -> list[CommandRun]:
        return self._list(CommandRun, "gsi1", "gsi1pk", f"CMDRUNS#{command_id}")

    def list_device_command_runs(self, epn: str) -> list[CommandRun]:
        return self._list(CommandRun, "gsi2", "gsi2pk", f"DEVCMD#{epn}")

    def create_release(self, release: Release) -> None:
        self._create(release)

    def list_releases(self) -> list[Release]:
        return self._list(Release, "gsi1", "gsi1pk", "RELEASES")

    # -- delivery groups (services/groups.py) ---------------------------------------------------

    def create_group(self, group: Group) -> None:
        self._create(group)

    def get_group(self, group_id: str) -> Group | None:
        return self._get(Group, group_id)

    def save_group(self, group: Group) -> None:
        self._save(group)

    def list_active_command_runs(self) -> list[CommandRun]:
        found = [r for shard in range(ACTIVE_SHARDS)
                 for r in self._list(CommandRun, "gsi3", "gsi3pk", f"ACTIVECMD#{shard}")]
        return sorted(found, key=lambda r: (r.command_id, r.epn))

def _load(cls: type[E], item: dict[str, Any]) -> E:
    record = json.loads(item["doc"]["S"])
    record["version"] = int(item["ver"]["N"])
    return from_record(cls, record)
