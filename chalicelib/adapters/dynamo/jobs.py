"""Jobs in the table: creation (with the Idempotency-Key item), reads, listings, explicit target
chunks, counters, and the one transaction that creates a batch of a job's executions with its counters.
Does not: business rules."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from ...domain.errors import ConcurrentUpdate
from ...domain.executions import SKIPPED
from ...domain.models import Execution, Job
from ...domain.ports import Page
from ...domain.waves import counter_moves
from .keys import TRANSACTION_PUTS
from .store import Store


class Jobs(Store):
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

    def job_counts(self, job_id: str) -> dict[str, int]:
        item = self._db.get_item(TableName=self._table, Key=self._counts_key(job_id),
                                 ConsistentRead=True).get("Item") or {}
        return {k[2:]: int(v["N"]) for k, v in item.items() if k.startswith("c_")}

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
