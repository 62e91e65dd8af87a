"""Delivery groups in the table (services/groups.py), each listed under its job by a marker item.
Does not: business rules."""

from __future__ import annotations

from typing import Any

from ...domain.models import Group
from .store import Store


class Groups(Store):
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
