"""Executions in the table (saves move the job's and the wave's counters) and a staged job's wave
members and counters. Does not: business rules."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ...domain.errors import ConcurrentUpdate
from ...domain.models import Execution
from ...domain.ports import Page
from .keys import ACTIVE_SHARDS, MEMBER_SPAN, load
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
