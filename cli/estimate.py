"""`ota jobs create --estimate`: ask the API to price a rollout (POST /jobs?dry_run=true) and print it.

Nothing is created: the API validates the body as for a real job and answers the estimate (services/
estimate.py). Text output is one table of line items, the total, the price table with its date, and
the same rollout with AWS IoT Jobs + MQTT streams; `--json` prints the API's answer unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import render
from .client import ApiClient
from .commands import Output


def quantity(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or float(value).is_integer() else f"{value:,.2f}"


def money(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}" if value >= 0.0001 else f"${value:.6f}"


def text(answer: Mapping[str, Any]) -> str:
    rollout, table, counts = answer["rollout"], answer["prices"], answer["counts"]
    rows = [{"service": line["service"], "item": line["item"], "quantity": quantity(line["quantity"]),
             "unit": line["unit"], "cost": money(line["cost"])} for line in answer["lines"]]
    head = (f"estimate only, nothing created: {rollout['targets']} device(s) x {render.size(rollout['package_size'])}, "
            f"{rollout['mode']} mode")
    if rollout["mode"] == "block":
        head += (f", {render.size(rollout['block_size'])} blocks, window {rollout['window']}, "
                 f"expected loss {rollout['loss']:.0%}")
    comparison = answer["comparison"]
    fallback = answer.get("fallback")
    if fallback:  # a delta job with a fallback: those devices are priced at the full package's size
        head += (f"; of them {fallback['targets']} take the fallback {fallback['package_id']} "
                 f"({render.size(fallback['package_size'])})")
    return "\n".join([
        head,
        f"per device: {quantity(counts['down_messages'] / rollout['targets'])} messages down, "
        f"{quantity(counts['up_messages'] / rollout['targets'])} up; rollout about "
        f"{render.duration(counts['seconds'])}",
        "",
        render.table(rows, [("SERVICE", "service"), ("ITEM", "item"), ("QUANTITY", "quantity"), ("UNIT", "unit"),
                            ("COST", "cost")]),
        "",
        f"total {money(answer['total'])} ({money(answer['per_device'])} per device)",
        f"{comparison['name']}: {money(comparison['total'])}",
        f"prices: {table['table']} ({table['region']}, {table['date']}, {table['currency']}); "
        "sources and assumptions: --json, docs/operations.md",
    ])


def jobs_estimate(api: ApiClient, out: Output, body: Mapping[str, Any], loss: float | None) -> int:
    params = {"dry_run": "true"}
    if loss is not None:
        params["loss"] = repr(loss)
    answer = api.request("POST", "/jobs", body=dict(body), params=params)
    out.emit(answer, lambda: text(answer))
    return 0
