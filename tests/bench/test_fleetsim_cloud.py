"""The fleet benchmark's reading of the cloud: pagination followed or not, counters summed, topics classified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fleetsim.cloud import Counters, dynamo_writes, paged, since

COUNTFIX = Path(__file__).resolve().parents[2] / "bench" / "countfix" / "sitecustomize.py"


class PagedApi:
    """A fake API client serving `items` in pages of `size`, with next_cursor when `cursors` is on."""

    def __init__(self, items: list[int], size: int, cursors: bool) -> None:
        self.items, self.size, self.cursors = items, size, cursors
        self.calls: list[dict[str, str]] = []

    def get(self, path: str, params: dict[str, str]) -> dict[str, object]:
        self.calls.append(dict(params))
        if not self.cursors:
            return {"things": [{"n": i} for i in self.items]}
        start = int(params.get("cursor", "0"))
        page = self.items[start:start + self.size]
        more = start + self.size < len(self.items)
        return {"things": [{"n": i} for i in page], "next_cursor": str(start + self.size) if more else None}


@pytest.mark.parametrize(("count", "size", "cursors", "calls"), [
    (0, 10, True, 1), (25, 10, True, 3), (30, 10, True, 3), (25, 10, False, 1)])
def test_paged_follows_next_cursor_when_there_is_one(count, size, cursors, calls):
    api = PagedApi(list(range(count)), size, cursors)
    assert [t["n"] for t in paged(api, "/things", "things")] == list(range(count))  # type: ignore[arg-type]
    assert len(api.calls) == calls and all(c["limit"] == "1000" for c in api.calls)


def test_counters_sum_the_processes_and_count_batch_items(tmp_path):
    (tmp_path / "1.json").write_text(json.dumps({"dynamodb:PutItem": 3, "publish:blk": 5}))
    (tmp_path / "2.json").write_text(json.dumps({"dynamodb:PutItem": 1, "dynamodb-items:TransactWriteItems": 4}))
    (tmp_path / "3.json").write_text("not json")  # a file being replaced: skipped
    after = Counters(tmp_path).read()
    assert after == {"dynamodb:PutItem": 4, "publish:blk": 5, "dynamodb-items:TransactWriteItems": 4}
    assert dynamo_writes(since(after, {"dynamodb:PutItem": 2})) == 6


TOPICS = [("ota/dev-1/blk", "blk"), ("ota/dev-1/job", "job"), ("ota/g/m1/job-1/blk", "group"),
          ("ota/model/m1/blk", "group"), ("ota/dev-1/cmd/result", "cmd-result"), ("other/x", "other")]


def test_countfix_classifies_topics():
    """In a child interpreter: loading the sitecustomize installs import hooks, never in the test process."""
    code = (f"import importlib.util as u; s = u.spec_from_file_location('c', {str(COUNTFIX)!r}); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); import json, sys; "
            "print(json.dumps([m.topic_kind(t) for t in json.loads(sys.argv[1])]))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps([t for t, _ in TOPICS])], capture_output=True,
                         text=True, check=True, env={**os.environ, "BENCH_FLEET_COUNTS": ""}).stdout
    assert json.loads(out) == [k for _, k in TOPICS]
