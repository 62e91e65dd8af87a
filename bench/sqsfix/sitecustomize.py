"""Opt-in fix for moto's SQS, loaded into the local stack's processes by the benchmarks (bench.harness).

moto 5.x recomputes every queue attribute, including three scans of all messages in the queue, on
each SendMessage entry and on each message it returns from ReceiveMessage (Queue.attributes via
send_message's deduplication check and is_message_valid_based_on_retention_period). With a backlog
of n messages every message costs O(n), so a fleet of devices that builds a backlog of a few hundred
acks drives the moto server to 100% CPU and starves the DynamoDB calls the handlers make. This module
makes those two paths O(1) (same results: the retention period and the deduplication flag are read
directly) and changes nothing else. It acts only when `moto.sqs.models` is imported, i.e. only in the
moto server. Real SQS has no such cost, so the fix makes the local stack closer to AWS, not faster.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

_TARGET = "moto.sqs.models"
_local = threading.local()


def _patch(models: ModuleType) -> None:
    backend, queue_class = models.SQSBackend, models.Queue
    full_attributes = queue_class.attributes.fget
    send_message = backend.send_message

    def attributes(self: Any) -> dict[str, Any]:
        if getattr(_local, "sending", False):  # send_message only reads ContentBasedDeduplication
            return {"ContentBasedDeduplication": str(bool(getattr(self, "content_based_deduplication", False))).lower()}
        return full_attributes(self)  # type: ignore[no-any-return]

    def patched_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        _local.sending = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            _local.sending = False

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return period + message.sent_timestamp / 1000 > models.unix_time()  # type: ignore[no-any-return]

    queue_class.attributes = property(attributes)
    backend.send_message = patched_send
    backend.is_message_valid_based_on_retention_period = retained


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _patch(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _Finder())
