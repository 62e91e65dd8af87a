"""The repository's generic DynamoDB requests: conditional create and save, reads by key, whole
listings and pages of one index partition, and the ADD-only counter updates (a job's, a wave's). Does
not: know any entity's listing; the mixins (catalog, jobs, executions, commands, groups) do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from ...domain.errors import ConcurrentUpdate, Conflict
from ...domain.models import E, Group, Package, to_record
from ...domain.ports import Page
from ...domain.waves import counter_moves
from ..paging import decode, encode
from .keys import REJECTED_TTL_SECONDS, ROOT, entity_id, indexes, load


class Store:
    def __init__(self, client: Any, table_name: str) -> None:
        self._db = client
        self._table = table_name

    def _key(self, cls: type, ident: str) -> dict[str, Any]:
        root = ROOT[cls]
        return {"pk": {"S": f"{root}#{ident}"}, "sk": {"S": root}}

    def _item(self, entity: Any) -> dict[str, Any]:
        item = self._key(type(entity), entity_id(entity))
        item.update({k: {"S": v} for k, v in indexes(entity).items()})
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
                raise Conflict(f"{type(entity).__name__.lower()} {entity_id(entity)!r} already exists") from err
            raise

    def _save(self, entity: Any) -> None:
        try:
            self._db.put_item(TableName=self._table, Item=self._item(entity),
                              ConditionExpression="ver = :prev", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                              ExpressionAttributeValues={":prev": {"N": str(entity.version - 1)}})
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                stored = err.response.get("Item")  # the winner's item, so the caller need not read it again
                raise ConcurrentUpdate(f"{type(entity).__name__} {entity_id(entity)} changed concurrently",
                                       current=load(type(entity), stored) if stored else None) from err
            raise

    def _get(self, cls: type[E], ident: str) -> E | None:
        item = self._db.get_item(TableName=self._table, Key=self._key(cls, ident), ConsistentRead=True).get("Item")
        return None if item is None else load(cls, item)

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
        return [load(cls, item) for item in self._query(index, key, value)]

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
        return Page(tuple(load(cls, i) for i in items), after)

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

    def _wave_updates(self, job_id: str, before: tuple[str, int | None] | None,
                      after: tuple[str, int | None]) -> list[dict[str, Any]]:
        return [self._wave_update(job_id, wave, deltas) for wave, deltas in counter_moves(before, after).items()]

    def _wave_update(self, job_id: str, wave: int, deltas: dict[str, int]) -> dict[str, Any]:
        update = self._counts_update(job_id, {k: v for k, v in deltas.items() if v})
        update["Key"] = {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"WAVE#{wave:04d}"}}
        return update
