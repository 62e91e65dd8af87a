"""The benchmark's view of the cloud side: paginated reads, the job's fan-out, the stack's counters.

- `paged(api, path, key)`: every item of a list route, following `next_cursor` when the API returns one
  (paginated API) and taking the single page otherwise (older API);
- `wait_executions(api, job_id, n)`: the job's executions once `n` exist. POST /jobs may create them in
  the background (the job shows `executions_created`): polled until all are there;
- `Counters(directory)`: the sums of the counts bench/countfix writes in each stack process
  (`<pid>.json`), with `since(before)` for the difference over a phase, and the derived figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cli.client import ApiClient

PAGE = 1000
WRITES = ("PutItem", "UpdateItem", "DeleteItem")


def paged(api: ApiClient, path: str, key: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    query = dict(params or {}, limit=str(PAGE))
    cursor: str | None = None
    for _ in range(100_000):
        if cursor:
            query["cursor"] = cursor
        page = api.get(path, query)
        items.extend(page.get(key, []))
        cursor = page.get("next_cursor")
        if not cursor:
            return items
    raise RuntimeError(f"{path}: more than 100000 pages")


def wait_executions(api: ApiClient, job_id: str, expected: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/jobs/{job_id}")
        created = job.get("executions_created")
        if created is None or int(created) >= expected or time.monotonic() > deadline:
            executions = paged(api, f"/jobs/{job_id}/executions", "executions")
            if len(executions) >= expected or time.monotonic() > deadline:
                return executions
        time.sleep(0.5)


class Counters:
    """Counts of the stack's processes, read from bench/countfix's files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for path in self.directory.glob("*.json"):
            try:
                counts = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + int(value)
        return totals

    def settled(self, wait: float = 1.2) -> dict[str, int]:
        """A read after the processes' next write (they write every 0.5 s)."""
        time.sleep(wait)
        return self.read()


def since(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}


def dynamo_writes(delta: Mapping[str, int]) -> int:
    """Items written: single-item writes, plus every item of a batch or a transaction."""
    single = sum(delta.get(f"dynamodb:{op}", 0) for op in WRITES)
    return single + delta.get("dynamodb-items:BatchWriteItem", 0) + delta.get("dynamodb-items:TransactWriteItems", 0)


def invocations(delta: Mapping[str, int]) -> dict[str, int]:
    return {k.split(":", 1)[1]: v for k, v in delta.items() if k.startswith("invoke:") and v}
