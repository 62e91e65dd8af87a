"""Executions in the table (saves move the job's and the wave's counters; a page of them is read with one
BatchGetItem and saved with one transaction, for a wave's release) and a staged job's wave members and
counters. Does not: business rules."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ...domain.errors import ConcurrentUpdate
from ...domain.models import Execution
from ...domain.ports import Page
from ...domain.waves import counter_moves
from .keys import ACTIVE_SHARDS, MEMBER_SPAN, TRANSACTION_PUTS, load
from .store import Store


class Executions(Store):
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
                                       current=load(Execution, stored) if stored else None) from err
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

    def get_executions(self, execution_ids: Sequence[str]) -> list[Execution]:
        """The stored ones of `execution_ids` (absent ones left out), by BatchGetItem, 100 keys a call."""
        ids = list(dict.fromkeys(execution_ids))
        found: list[Execution] = []
        for start in range(0, len(ids), 100):
            keys = [self._key(Execution, i) for i in ids[start : start + 100]]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                reply = self._db.batch_get_item(RequestItems=request)
                found.extend(load(Execution, item) for item in reply.get("Responses", {}).get(self._table, []))
                request = reply.get("UnprocessedKeys") or {}
        return found

    def save_executions(self, changes: Sequence[tuple[Execution, Execution]]) -> list[bool]:
        """Each (as read, to store): stored if the execution is still as read. Up to TRANSACTION_PUTS of one
        job in one transaction, with the job's and its waves' counters moved in it (a wave's release is one
        write request, not four per device); a transaction that any changed execution cancels, or a batch
        spanning more than two waves, is saved one at a time (False for the ones that changed)."""
        saved: list[bool] = []
        for start in range(0, len(changes), TRANSACTION_PUTS):
            batch = list(changes[start : start + TRANSACTION_PUTS])
            waves = {e.wave for pair in batch for e in pair if e.wave is not None}
            if len({a.execution_id for _, a in batch}) < len(batch) or len({a.job_id for _, a in batch}) != 1 \
                    or len(waves) > 2:
                saved.extend(self._save_if_unchanged(after) for _, after in batch)
                continue
            try:
                self._db.transact_write_items(TransactItems=self._moves(batch))
            except ClientError as err:
                if err.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                saved.extend(self._save_if_unchanged(after) for _, after in batch)
                continue
            saved.extend(True for _ in batch)
        return saved

    def _moves(self, batch: Sequence[tuple[Execution, Execution]]) -> list[dict[str, Any]]:
        job_id = batch[0][1].job_id
        counted: Counter[str] = Counter()
        by_wave: dict[int, Counter[str]] = {}
        for before, after in batch:
            if before.state != after.state:
                counted.update({before.state: -1})
                counted.update({after.state: 1})
            for wave, deltas in counter_moves((before.state, before.wave), (after.state, after.wave)).items():
                by_wave.setdefault(wave, Counter()).update(deltas)
        counts = {k: v for k, v in counted.items() if v}
        return [
            *({"Put": {"TableName": self._table, "Item": self._item(after), "ConditionExpression": "ver = :prev",
                       "ExpressionAttributeValues": {":prev": {"N": str(after.version - 1)}}}} for _, after in batch),
            *([{"Update": self._counts_update(job_id, counts)}] if counts else []),
            *({"Update": self._wave_update(job_id, wave, dict(deltas))} for wave, deltas in by_wave.items()
              if any(deltas.values())),
        ]

    def _save_if_unchanged(self, execution: Execution) -> bool:
        try:
            self.save_execution(execution)
        except ConcurrentUpdate:
            return False
        return True

    def job_executions_page(self, job_id: str, limit: int, cursor: str | None) -> Page[Execution]:
        return self._page(Execution, "gsi1", f"JOBEXEC#{job_id}", limit, cursor)

    def device_executions_page(self, epn: str, limit: int, cursor: str | None) -> Page[Execution]:
        return self._page(Execution, "gsi2", f"DEVEXEC#{epn}", limit, cursor)

    def list_job_executions(self, job_id: str) -> list[Execution]:
        return self._list(Execution, "gsi1", "gsi1pk", f"JOBEXEC#{job_id}")

    def list_device_executions(self, epn: str) -> list[Execution]:
        return self._list(Execution, "gsi2", "gsi2pk", f"DEVEXEC#{epn}")

    def list_active_executions(self) -> list[Execution]:
        found = [e for shard in range(ACTIVE_SHARDS)
                 for e in self._list(Execution, "gsi3", "gsi3pk", f"ACTIVEEXEC#{shard}")]
        return sorted(found, key=lambda e: (e.job_id, e.epn))

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
