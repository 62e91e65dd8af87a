"""Opt-in counters for the fleet benchmark, loaded into the local stack's processes (bench.fleet) via PYTHONPATH.

It changes no behaviour: it wraps a few functions to count their calls and writes the counts of its
process to `$BENCH_FLEET_COUNTS/<pid>.json` every half second (only once something was counted):

- in the moto server, every DynamoDB request by operation (`dynamodb:PutItem`, ...) and the items a
  BatchWriteItem / TransactWriteItems carries (`dynamodb-items:...`): the table writes of the API and
  of every handler, whoever makes them;
- in any process, every paho `Client.publish` by kind of topic (`publish:job`, `publish:blk`,
  `publish:group` for anything under ota/ that is not `ota/{epn}/{leaf}`, ...): the cloud's publishes
  (the API publishes job documents, the bridge's handlers blocks);
- in the bridge, every Lambda-equivalent invocation: each batch `local.sqspump.SqsPump` hands to a
  handler (`invoke:<function>`, `records:<function>`) and each run of the sweep schedule
  (`invoke:sweep`).

Only one sitecustomize is imported per interpreter, so this one also loads bench/sqsfix (as
bench/s3fix does). Acts only when BENCH_FLEET_COUNTS is set.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

_OUT = os.environ.get("BENCH_FLEET_COUNTS")
_counts: dict[str, int] = {}
_lock = threading.Lock()
_writer: list[threading.Thread] = []
DYNAMO_OPS = {"put_item": "PutItem", "update_item": "UpdateItem", "delete_item": "DeleteItem",
              "batch_write_item": "BatchWriteItem", "transact_write_items": "TransactWriteItems",
              "get_item": "GetItem", "query": "Query", "scan": "Scan", "batch_get_item": "BatchGetItem",
              "transact_get_items": "TransactGetItems"}


def _write_loop() -> None:
    assert _OUT is not None
    path = Path(_OUT) / f"{os.getpid()}.json"
    while True:
        time.sleep(0.5)
        with _lock:
            data = json.dumps(_counts)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(data)
        os.replace(tmp, path)


def count(name: str, n: int = 1) -> None:
    with _lock:
        _counts[name] = _counts.get(name, 0) + n
        if not _writer:
            thread = threading.Thread(target=_write_loop, name="bench-counts", daemon=True)
            _writer.append(thread)
            thread.start()


def topic_kind(topic: str) -> str:
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "ota" and parts[1] != "model":
        return parts[2]
    if len(parts) == 4 and parts[0] == "ota" and parts[3] == "result":
        return "cmd-result"
    return "group" if parts[0] == "ota" else "other"


def _patch_dynamo(module: ModuleType) -> None:
    handler = module.DynamoHandler
    for method, op in DYNAMO_OPS.items():
        original = getattr(handler, method, None)
        if original is None:
            continue

        def wrapped(self: Any, *args: Any, _original: Callable[..., Any] = original, _op: str = op,
                    **kwargs: Any) -> Any:
            count(f"dynamodb:{_op}")
            if _op in ("BatchWriteItem", "TransactWriteItems"):
                try:
                    body = json.loads(self.body)
                    items = body.get("TransactItems") or [r for rs in body.get("RequestItems", {}).values() for r in rs]
                    count(f"dynamodb-items:{_op}", len(items))
                except (ValueError, TypeError, AttributeError):
                    pass
            return _original(self, *args, **kwargs)

        setattr(handler, method, wrapped)


def _patch_paho(module: ModuleType) -> None:
    publish = module.Client.publish

    def wrapped(self: Any, topic: str, *args: Any, **kwargs: Any) -> Any:
        count(f"publish:{topic_kind(topic)}")
        return publish(self, topic, *args, **kwargs)

    module.Client.publish = wrapped


def _patch_pump(module: ModuleType) -> None:
    dispatch = module.SqsPump.dispatch

    def wrapped(self: Any, messages: list[Any]) -> Any:
        count(f"invoke:{self._function_name}")
        count(f"records:{self._function_name}", len(messages))
        return dispatch(self, messages)

    module.SqsPump.dispatch = wrapped


def _patch_schedules(module: ModuleType) -> None:
    sweep = getattr(module, "sweep", None)
    if sweep is None:
        return

    def wrapped(event: Any, context: Any) -> Any:
        count("invoke:sweep")
        return sweep(event, context)

    setattr(module, "sweep", wrapped)  # noqa: B010 (mypy cannot see the module's attribute)


_TARGETS = {"moto.dynamodb.responses": _patch_dynamo, "paho.mqtt.client": _patch_paho,
            "local.sqspump": _patch_pump, "chalicelib.triggers.schedules": _patch_schedules}


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.pending = dict(_TARGETS)

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        patch = self.pending.pop(name, None)
        if patch is None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            if self.pending:
                sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _load_sqsfix() -> None:
    path = Path(__file__).resolve().parents[1] / "sqsfix" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("bench_sqsfix", path)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


_load_sqsfix()
if _OUT:
    sys.meta_path.insert(0, _Finder())
