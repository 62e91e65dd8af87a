"""DynamoDB repository (single-table design): the key layout lives here and nowhere else.

Items: pk/sk primary key, three sparse indexes (gsi1 lists by collection or by job, gsi2 lists a
device's executions, gsi3 holds only what is active: ACTIVE jobs under one key and QUEUED/IN_PROGRESS
executions spread over ACTIVE_SHARDS keys; a put without gsi3 keys drops the item from it), `ver`
(optimistic concurrency, checked by condition expressions), `doc` (the entity as JSON, see
domain.models.to_record) and, on REJECTED packages and groups of ended jobs only, `expires_at` (DynamoDB
TTL, epoch seconds).
Remote commands and releases follow the same layout: a command (CMD#) listed under gsi1 COMMANDS, its
runs per state counted ADD-only in (CMD#<id>, COUNTS) like a job's, one run per device
(CMDRUN#<command>#<epn>) listed per command (gsi1), per device (gsi2 DEVCMD#) and, while
QUEUED/DELIVERED/RUNNING, in gsi3 ACTIVECMD#<shard>; a release (REL#) under gsi1 RELEASES.
Fleet scale (issue 13): devices are also in gsi2 under MODEL#<model>#<shard> (MODEL_SHARDS partitions,
so a model's listing is a query, not a scan and a filter); an AVAILABLE-or-not package with a verified
sha256 under gsi2 PKGSHA#<sha256>; an ACTIVE continuous model job under gsi2 CONTJOB#<model>. A job's
counters are one item (JOB#<id>, COUNTS) of numbers changed with ADD only (c_<name>); an explicit target
list is chunk items (JOB#<id>, TARGETS#<n>); each delivery group of a job is listed by a marker item
(JOB#<id>, GROUP#<group id>). An execution is created only while its job item is ACTIVE (a transaction
condition). A group whose job ended carries `expires_at` (TTL), and so does its marker. Staged jobs
(domain/waves.py): the eligible targets of a fan-out item as (JOB#<id>, WMEM#<first ordinal, 13 digits>)
holding at most MEMBER_SPAN EPNs, so a wave's members are one key-range query; a late member of a
continuous job (JOB#<id>, WLATE#<epn>); per-wave counters (JOB#<id>, WAVE#<wave, 4 digits>), ADD only,
moved with the job's counters. Listings page with Limit and an opaque cursor made of the last returned
item's key attributes (adapters/paging.py).
Does not: business rules; those are in services.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ..domain.commands import ACTIVE as COMMAND_ACTIVE
from ..domain.errors import ConcurrentUpdate, Conflict
from ..domain.executions import ACTIVE, SKIPPED
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
from ..domain.ports import Page
from ..domain.waves import counter_moves
from .paging import MODEL_SHARDS, decode, encode, model_shard, refused

MEMBER_SPAN = 100  # EPNs per wave-member item (a fan-out item's page or chunk; longer lists are split)
# executions per create_executions transaction: DynamoDB takes 100 items at most, and the rest are the job's
# counters, the job's ACTIVE check and the counters of at most two waves
TRANSACTION_PUTS = 96
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
        return {"gsi1pk": "DEVICES", "gsi1sk": entity.epn,
                "gsi2pk": f"MODEL#{entity.model}#{model_shard(entity.epn)}", "gsi2sk": entity.epn}
    if isinstance(entity, PublisherKey):
        return {"gsi1pk": "KEYS", "gsi1sk": entity.key_id}
    if isinstance(entity, Package):
        keys = {"gsi1pk": "PACKAGES", "gsi1sk": f"{entity.created_at:020.6f}#{entity.upload_id}"}
        if entity.sha256:
            keys.update(gsi2pk=f"PKGSHA#{entity.sha256}", gsi2sk=entity.upload_id)
        return keys
    if isinstance(entity, Job):
        keys = {"gsi1pk": "JOBS", "gsi1sk": f"{entity.created_at:020.6f}#{entity.job_id}"}
        if entity.state == "ACTIVE":
            keys.update(gsi3pk="ACTIVEJOB", gsi3sk=entity.job_id)
            if entity.continuous and "model" in entity.target_spec:
                keys.update(gsi2pk=f"CONTJOB#{entity.target_spec['model']}", gsi2sk=entity.job_id)
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
        if isinstance(entity, Group) and entity.expires_at is not None:  # its job ended (services/groups.py)
            item["expires_at"] = {"N": str(int(entity.expires_at))}
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
        yield from self._pages(kwargs)

    def _pages(self, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a Query, page after page."""
        while True:
            page = self._db.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    def _list(self, cls: type[E], index: str, key: str, value: str) -> list[E]:
        return [_load(cls, item) for item in self._query(index, key, value)]

    def _raw_page(self, index: str, value: str, limit: int, start: dict[str, str] | None
                  ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` items of one index partition after `start`, and whether more follow."""
        kwargs: dict[str, Any] = {
            "TableName": self._table, "IndexName": index, "KeyConditionExpression": f"{index}pk = :v",
            "ExpressionAttributeValues": {":v": {"S": value}},
        }
        if start is not None:
            kwargs["ExclusiveStartKey"] = {k: {"S": v} for k, v in start.items()}
        items: list[dict[str, Any]] = []
        while len(items) <= limit:  # one more than asked: says whether a next page exists
            kwargs["Limit"] = limit + 1 - len(items)
            page = self._db.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items[:limit], len(items) > limit

    def _page(self, cls: type[E], index: str, value: str, limit: int, cursor: str | None) -> Page[E]:
        names = {"pk", "sk", f"{index}pk", f"{index}sk"}
        start = None if cursor is None else decode(cursor, names, {f"{index}pk": value})
        items, more = self._raw_page(index, value, limit, start)
        after = encode({k: items[-1][k]["S"] for k in names}) if more and items else None
        return Page(tuple(_load(cls, i) for i in items), after)

    # -- devices ------------------------------------------------------------------------------

    def create_device(self, device: Device) -> None:
        self._create(device)

    def get_device(self, epn: str) -> Device | None:
        return self._get(Device, epn)

    def save_device(self, device: Device) -> None:
        self._save(device)

    def list_devices(self, model: str | None = None) -> list[Device]:
        if model is None:
            return self._list(Device, "gsi1", "gsi1pk", "DEVICES")
        return [d for shard in range(MODEL_SHARDS)
                for d in self._list(Device, "gsi2", "gsi2pk", f"MODEL#{model}#{shard}")]

    def devices_page(self, model: str | None, limit: int, cursor: str | None) -> Page[Device]:
        if model is None:
            return self._page(Device, "gsi1", "DEVICES", limit, cursor)
        names = {"pk", "sk", "gsi2pk", "gsi2sk", "shard"}
        shard, start = 0, None
        if cursor is not None:
            position = decode(cursor, names)
            shard = int(position.pop("shard")) if position["shard"] in {str(n) for n in range(MODEL_SHARDS)} else -1
            if shard < 0 or position["gsi2pk"] not in ("", f"MODEL#{model}#{shard}"):
                raise refused()  # a cursor of another listing
            start = position if position["pk"] else None
        found: list[dict[str, Any]] = []
        while shard < MODEL_SHARDS:
            need = limit - len(found)
            items, more = self._raw_page("gsi2", f"MODEL#{model}#{shard}", max(need, 1), start)
            if need == 0:  # the page is full: only asking whether anything follows
                if items:
                    empty = dict.fromkeys(("pk", "sk", "gsi2pk", "gsi2sk"), "")
                    return Page(tuple(_load(Device, i) for i in found), encode({**empty, "shard": str(shard)}))
            else:
                found.extend(items)
                if more:
                    last = {k: found[-1][k]["S"] for k in ("pk", "sk", "gsi2pk", "gsi2sk")}
                    return Page(tuple(_load(Device, i) for i in found), encode({**last, "shard": str(shard)}))
            shard, start = shard + 1, None
        return Page(tuple(_load(Device, i) for i in found), None)

    def get_devices(self, epns: Sequence[str]) -> list[Device | None]:
        found: dict[str, Device] = {}
        unique = list(dict.fromkeys(epns))
        for start in range(0, len(unique), 100):
            keys = [self._key(Device, epn) for epn in unique[start : start + 100]]
            pending: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while pending:
                answer = self._db.batch_get_item(RequestItems=pending)
                for item in answer.get("Responses", {}).get(self._table, []):
                    device = _load(Device, item)
                    found[device.epn] = device
                pending = answer.get("UnprocessedKeys") or {}
        return [found.get(epn) for epn in epns]

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

    def packages_page(self, limit: int, cursor: str | None) -> Page[Package]:
        return self._page(Package, "gsi1", "PACKAGES", limit, cursor)

    def packages_with_sha256(self, sha256: str) -> list[Package]:
        return self._list(Package, "gsi2", "gsi2pk", f"PKGSHA#{sha256}")

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
        for execution in executions:
            self.create_execution(execution)
        return job

    def get_job(self, job_id: str) -> Job | None:
        return self._get(Job, job_id)

    def save_job(self, job: Job) -> None:
        self._save(job)

    def list_jobs(self) -> list[Job]:
        return self._list(Job, "gsi1", "gsi1pk", "JOBS")

    def jobs_page(self, limit: int, cursor: str | None) -> Page[Job]:
        return self._page(Job, "gsi1", "JOBS", limit, cursor)

    def continuous_jobs(self, model: str) -> list[Job]:
        return self._list(Job, "gsi2", "gsi2pk", f"CONTJOB#{model}")

    def put_job_targets(self, job_id: str, chunks: Sequence[Sequence[str]]) -> None:
        for n, chunk in enumerate(chunks):  # one PutItem each: callers need no BatchWriteItem permission
            self._db.put_item(TableName=self._table, Item={
                "pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"TARGETS#{n:06d}"},
                "epns": {"S": json.dumps(list(chunk), separators=(",", ":"))}})

    def get_job_targets(self, job_id: str, chunk: int) -> tuple[str, ...] | None:
        item = self._db.get_item(TableName=self._table, ConsistentRead=True, Key={
            "pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"TARGETS#{chunk:06d}"}}).get("Item")
        return None if item is None else tuple(json.loads(item["epns"]["S"]))

    def _counts_key(self, job_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "COUNTS"}}

    def _counts_update(self, job_id: str, deltas: dict[str, int]) -> dict[str, Any]:
        names = {f"#c{n}": f"c_{name}" for n, name in enumerate(deltas)}
        values = {f":c{n}": {"N": str(delta)} for n, delta in enumerate(deltas.values())}
        return {"TableName": self._table, "Key": self._counts_key(job_id),
                "UpdateExpression": "ADD " + ", ".join(f"#c{n} :c{n}" for n in range(len(deltas))),
                "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}

    def add_job_counts(self, job_id: str, deltas: dict[str, int]) -> None:
        deltas = {k: v for k, v in deltas.items() if v}
        if deltas:
            self._db.update_item(**self._counts_update(job_id, deltas))

    def job_counts(self, job_id: str) -> dict[str, int]:
        item = self._db.get_item(TableName=self._table, Key=self._counts_key(job_id),
                                 ConsistentRead=True).get("Item") or {}
        return {k[2:]: int(v["N"]) for k, v in item.items() if k.startswith("c_")}

    def put_wave_members(self, job_id: str, first: int, epns: Sequence[str]) -> None:
        for start in range(0, len(epns), MEMBER_SPAN):
            self._db.put_item(TableName=self._table, Item={
                "pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"WMEM#{first + start:013d}"},
                "epns": {"S": json.dumps(list(epns[start : start + MEMBER_SPAN]), separators=(",", ":"))}})

    def _job_range(self, job_id: str, low: str, high: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":pk": {"S": f"JOB#{job_id}"}, ":low": {"S": low}, ":high": {"S": high}}}
        yield from self._pages(kwargs)

    def wave_members(self, job_id: str, first: int, end: int) -> list[str]:
        if end <= first:
            return []
        found: list[str] = []
        low = f"WMEM#{max(0, first - MEMBER_SPAN + 1):013d}"
        for item in self._job_range(job_id, low, f"WMEM#{end - 1:013d}"):
            start = int(item["sk"]["S"][5:])
            found.extend(e for n, e in enumerate(json.loads(item["epns"]["S"]), start) if first <= n < end)
        return found

    def put_late_member(self, job_id: str, epn: str) -> None:
        self._db.put_item(TableName=self._table, Item={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"WLATE#{epn}"}})

    def late_members(self, job_id: str) -> list[str]:
        return [item["sk"]["S"][6:] for item in self._job_range(job_id, "WLATE#", "WLATE#~")]

    def wave_counts(self, job_id: str, first: int, end: int) -> dict[int, dict[str, int]]:
        if end <= first:
            return {}
        return {int(item["sk"]["S"][5:]): {k[2:]: int(v["N"]) for k, v in item.items() if k.startswith("c_")}
                for item in self._job_range(job_id, f"WAVE#{first:04d}", f"WAVE#{end - 1:04d}")}

    def _wave_updates(self, job_id: str, before: tuple[str, int | None] | None,
                      after: tuple[str, int | None]) -> list[dict[str, Any]]:
        return [self._wave_update(job_id, wave, deltas) for wave, deltas in counter_moves(before, after).items()]

    def _wave_update(self, job_id: str, wave: int, deltas: dict[str, int]) -> dict[str, Any]:
        update = self._counts_update(job_id, {k: v for k, v in deltas.items() if v})
        update["Key"] = {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"WAVE#{wave:04d}"}}
        return update

    def _creation(self, batch: Sequence[Execution]) -> list[dict[str, Any]]:
        """The transaction that creates `batch` (one job's executions): each a conditional put, the job's
        counters (`targets_resolved`, `executions_created` unless SKIPPED, its state, `fallback_created`) and
        its waves' counters, and a check that the job is ACTIVE (an ACTIVE job item, and only that, is in
        gsi3 under ACTIVEJOB): a fan-out batch that read the job before a cancel creates nothing after it."""
        job_id = batch[0].job_id
        counted: Counter[str] = Counter()
        by_wave: dict[int, Counter[str]] = {}
        for e in batch:
            counted.update({"targets_resolved": 1, "executions_created": int(e.state != SKIPPED), e.state: 1,
                            "fallback_created": int(e.package_id is not None)})
            for wave, deltas in counter_moves(None, (e.state, e.wave)).items():
                by_wave.setdefault(wave, Counter()).update(deltas)
        return [
            *({"Put": {"TableName": self._table, "Item": self._item(e),
                       "ConditionExpression": "attribute_not_exists(pk)"}} for e in batch),
            {"Update": self._counts_update(job_id, {k: v for k, v in counted.items() if v})},
            {"ConditionCheck": {"TableName": self._table, "Key": self._key(Job, job_id),
                                "ConditionExpression": "gsi3pk = :active",
                                "ExpressionAttributeValues": {":active": {"S": "ACTIVEJOB"}}}},
            *({"Update": self._wave_update(job_id, wave, dict(deltas))} for wave, deltas in by_wave.items()),
        ]

    def create_execution(self, execution: Execution) -> bool:
        try:
            self._db.transact_write_items(TransactItems=self._creation([execution]))
        except ClientError as err:
            if err.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = err.response.get("CancellationReasons") or []
            if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                return False
            raise
        return True

    def create_executions(self, executions: Sequence[Execution]) -> list[bool]:
        """create_execution for many at once: up to TRANSACTION_PUTS executions in one transaction (a fan-out
        page costs one write request, not one per device); a transaction cancelled by any condition (a
        redelivered page, a job canceled meanwhile), or a batch spanning more than two waves, is done one
        execution at a time."""
        created: list[bool] = []
        for start in range(0, len(executions), TRANSACTION_PUTS):
            batch = list(executions[start : start + TRANSACTION_PUTS])
            if (len({e.execution_id for e in batch}) < len(batch) or len({e.job_id for e in batch}) != 1
                    or len({e.wave for e in batch if e.wave is not None}) > 2):
                created.extend(self.create_execution(e) for e in batch)
                continue
            try:
                self._db.transact_write_items(TransactItems=self._creation(batch))
            except ClientError as err:
                if err.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                created.extend(self.create_execution(e) for e in batch)
                continue
            created.extend(True for _ in batch)
        return created

    def list_active_jobs(self) -> list[Job]:
        return sorted(self._list(Job, "gsi3", "gsi3pk", "ACTIVEJOB"), key=lambda j: (j.created_at, j.job_id))

    def list_active_executions(self) -> list[Execution]:
        found = [e for shard in range(ACTIVE_SHARDS)
                 for e in self._list(Execution, "gsi3", "gsi3pk", f"ACTIVEEXEC#{shard}")]
        return sorted(found, key=lambda e: (e.job_id, e.epn))

    def get_execution(self, execution_id: str) -> Execution | None:
        return self._get(Execution, execution_id)

    def save_execution(self, execution: Execution) -> None:
        try:
            old = self._db.put_item(TableName=self._table, Item=self._item(execution),
                                    ConditionExpression="ver = :prev", ReturnValues="ALL_OLD",
                                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                                    ExpressionAttributeValues={":prev": {"N": str(execution.version - 1)}})
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                stored = err.response.get("Item")  # the winner's item, so the caller need not read it again
                raise ConcurrentUpdate(f"Execution {execution.execution_id} changed concurrently",
                                       current=_load(Execution, stored) if stored else None) from err
            raise
        stored = json.loads(old["Attributes"]["doc"]["S"]) if "Attributes" in old else None
        before = stored["state"] if stored is not None else None
        if before is not None and before != execution.state:
            # not in the put's transaction (ALL_OLD tells the old state only after it): a crash between the
            # two leaves one count behind; the sweeper confirms completion from the items themselves
            self.add_job_counts(execution.job_id, {before: -1, execution.state: 1})
        if stored is not None:  # a staged job's per-wave counters, likewise
            for update in self._wave_updates(execution.job_id, (str(before), stored.get("wave")),
                                             (execution.state, execution.wave)):
                self._db.update_item(**update)

    def job_executions_page(self, job_id: str, limit: int, cursor: str | None) -> Page[Execution]:
        return self._page(Execution, "gsi1", f"JOBEXEC#{job_id}", limit, cursor)

    def device_executions_page(self, epn: str, limit: int, cursor: str | None) -> Page[Execution]:
        return self._page(Execution, "gsi2", f"DEVEXEC#{epn}", limit, cursor)

    def list_job_executions(self, job_id: str) -> list[Execution]:
        return self._list(Execution, "gsi1", "gsi1pk", f"JOBEXEC#{job_id}")

    def list_device_executions(self, epn: str) -> list[Execution]:
        return self._list(Execution, "gsi2", "gsi2pk", f"DEVEXEC#{epn}")


    # -- remote commands -------------------------------------------------------------------------

    def create_command(self, command: RemoteCommand, runs: Sequence[CommandRun]) -> None:
        counts = Counter(r.state for r in runs)
        counters = {"pk": {"S": f"CMD#{command.command_id}"}, "sk": {"S": "COUNTS"},
                    **{f"c_{state}": {"N": str(n)} for state, n in counts.items()}}
        absent = "attribute_not_exists(pk)"
        try:  # the command and its counters at once; then its runs (a crash between leaves runs unwritten)
            self._db.transact_write_items(TransactItems=[
                {"Put": {"TableName": self._table, "Item": self._item(command), "ConditionExpression": absent}},
                {"Put": {"TableName": self._table, "Item": counters, "ConditionExpression": absent}}])
        except ClientError as err:
            if err.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            if any(r.get("Code") == "ConditionalCheckFailed" for r in err.response.get("CancellationReasons") or []):
                raise Conflict(f"remotecommand {command.command_id!r} already exists") from err
            raise
        for start in range(0, len(runs), 25):
            requests = [{"PutRequest": {"Item": self._item(r)}} for r in runs[start : start + 25]]
            pending: dict[str, Any] = {self._table: requests}
            while pending:
                pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def get_command(self, command_id: str) -> RemoteCommand | None:
        return self._get(RemoteCommand, command_id)

    def list_commands(self) -> list[RemoteCommand]:
        return self._list(RemoteCommand, "gsi1", "gsi1pk", "COMMANDS")

    def commands_page(self, limit: int, cursor: str | None) -> Page[RemoteCommand]:
        return self._page(RemoteCommand, "gsi1", "COMMANDS", limit, cursor)

    def command_counts(self, command_id: str) -> dict[str, int]:
        item = self._db.get_item(TableName=self._table, ConsistentRead=True, Key={
            "pk": {"S": f"CMD#{command_id}"}, "sk": {"S": "COUNTS"}}).get("Item") or {}
        return {k[2:]: int(v["N"]) for k, v in item.items() if k.startswith("c_")}

    def get_command_run(self, command_id: str, epn: str) -> CommandRun | None:
        return self._get(CommandRun, f"{command_id}#{epn}")

    def save_command_run(self, run: CommandRun) -> None:
        try:
            old = self._db.put_item(TableName=self._table, Item=self._item(run), ConditionExpression="ver = :prev",
                                    ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                                    ExpressionAttributeValues={":prev": {"N": str(run.version - 1)}})
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                stored = err.response.get("Item")
                raise ConcurrentUpdate(f"CommandRun {run.command_id}#{run.epn} changed concurrently",
                                       current=_load(CommandRun, stored) if stored else None) from err
            raise
        before = json.loads(old["Attributes"]["doc"]["S"])["state"] if "Attributes" in old else None
        if before is not None and before != run.state:  # as save_execution: not in the put's transaction
            update = self._counts_update(run.command_id, {before: -1, run.state: 1})
            update["Key"] = {"pk": {"S": f"CMD#{run.command_id}"}, "sk": {"S": "COUNTS"}}
            self._db.update_item(**update)

    def list_command_runs(self, command_id: str) -> list[CommandRun]:
        return self._list(CommandRun, "gsi1", "gsi1pk", f"CMDRUNS#{command_id}")

    def command_runs_page(self, command_id: str, limit: int, cursor: str | None) -> Page[CommandRun]:
        return self._page(CommandRun, "gsi1", f"CMDRUNS#{command_id}", limit, cursor)

    def list_device_command_runs(self, epn: str) -> list[CommandRun]:
        return self._list(CommandRun, "gsi2", "gsi2pk", f"DEVCMD#{epn}")

    def device_command_runs_page(self, epn: str, limit: int, cursor: str | None) -> Page[CommandRun]:
        return self._page(CommandRun, "gsi2", f"DEVCMD#{epn}", limit, cursor)

    def create_release(self, release: Release) -> None:
        self._create(release)

    def list_releases(self) -> list[Release]:
        return self._list(Release, "gsi1", "gsi1pk", "RELEASES")

    def releases_page(self, limit: int, cursor: str | None) -> Page[Release]:
        return self._page(Release, "gsi1", "RELEASES", limit, cursor)

    # -- delivery groups (services/groups.py) ---------------------------------------------------

    def _group_marker(self, group: Group) -> dict[str, Any]:
        """The item that lists a group under its job's partition (JOB#<id>, GROUP#<group id>): read by
        job_groups with one query of the base table, not through an index every group save would write."""
        item = {"pk": {"S": f"JOB#{group.job_id}"}, "sk": {"S": f"GROUP#{group.group_id}"}}
        if group.expires_at is not None:
            item["expires_at"] = {"N": str(int(group.expires_at))}
        return item

    def create_group(self, group: Group) -> None:
        self._db.put_item(TableName=self._table, Item=self._group_marker(group))  # idempotent, before the group
        self._create(group)

    def get_group(self, group_id: str) -> Group | None:
        return self._get(Group, group_id)

    def save_group(self, group: Group) -> None:
        self._save(group)
        if group.expires_at is not None:  # the marker expires with it
            self._db.put_item(TableName=self._table, Item=self._group_marker(group))

    def job_groups(self, job_id: str) -> list[Group]:
        kwargs: dict[str, Any] = {
            "TableName": self._table, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :groups)",
            "ExpressionAttributeValues": {":pk": {"S": f"JOB#{job_id}"}, ":groups": {"S": "GROUP#"}}}
        found: list[Group] = []
        while True:
            page = self._db.query(**kwargs)
            for marker in page.get("Items", []):
                group = self.get_group(marker["sk"]["S"][len("GROUP#"):])
                if group is not None:
                    found.append(group)
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list_active_command_runs(self) -> list[CommandRun]:
        found = [r for shard in range(ACTIVE_SHARDS)
                 for r in self._list(CommandRun, "gsi3", "gsi3pk", f"ACTIVECMD#{shard}")]
        return sorted(found, key=lambda r: (r.command_id, r.epn))

def _load(cls: type[E], item: dict[str, Any]) -> E:
    record = json.loads(item["doc"]["S"])
    record["version"] = int(item["ver"]["N"])
    return from_record(cls, record)
