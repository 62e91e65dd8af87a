"""Remote commands and their per-device runs in the table, with the per-state run counters. Does
not: business rules."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from ...domain.errors import ConcurrentUpdate, Conflict
from ...domain.models import CommandRun, RemoteCommand
from ...domain.ports import Page
from .keys import ACTIVE_SHARDS, load
from .store import Store


class Commands(Store):
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
                                       current=load(CommandRun, stored) if stored else None) from err
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

    def list_active_command_runs(self) -> list[CommandRun]:
        found = [r for shard in range(ACTIVE_SHARDS)
                 for r in self._list(CommandRun, "gsi3", "gsi3pk", f"ACTIVECMD#{shard}")]
        return sorted(found, key=lambda r: (r.command_id, r.epn))
