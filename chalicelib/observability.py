"""The process's one Powertools Metrics buffer, shared by app.py's middleware and the triggers.

Powertools keeps one metric set per process. Lambda runs one event at a time, but the local API server
and the bridge run handlers in threads of one process: unserialised, one thread's flush broke another's
(a 500 "Must contain at least one metric"). So every add and every flush goes through here, under one
lock. Does not: decide what is measured, or flush by itself (the middleware flushes once per event).
"""

from __future__ import annotations

import threading

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

metrics = Metrics(namespace="OTA", service="ota")
_lock = threading.Lock()


def count(name: str, value: int) -> None:
    """Add `value` to the count metric `name` (emitted at the next flush)."""
    with _lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def flush() -> None:
    """Emit what was added so far (nothing if nothing was added)."""
    with _lock:
        metrics.flush_metrics(raise_on_empty_metrics=False)
