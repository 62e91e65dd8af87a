"""Text output of the `ota` command: JSON, aligned tables, key/value blocks and progress bars. Pure.

Functions return strings; printing and terminal handling stay in the callers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

TERMINAL = ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "SKIPPED")


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def pick(record: Mapping[str, Any], path: str, default: Any = "") -> Any:
    """Read 'a.b' from nested dicts; `default` when any part is missing."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return default if value is None else value


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    text = str(value)
    return text if text else "-"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]], empty: str = "(none)") -> str:
    """Columns are (header, path); missing values show as '-'."""
    if not rows:
        return empty
    cells = [[cell(pick(row, path)) for _, path in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, (h, _) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def block(record: Mapping[str, Any], order: Sequence[str] = ()) -> str:
    """'key: value' lines, listed keys first, nested values as compact JSON."""
    keys = [k for k in order if k in record] + sorted(k for k in record if k not in order)
    width = max((len(k) for k in keys), default=0)
    lines = []
    for key in keys:
        value = record[key]
        shown = json.dumps(value, sort_keys=True) if isinstance(value, Mapping | list) else cell(value)
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)


def percent_of(execution: Mapping[str, Any]) -> float:
    """What the API says happened (it never shows progress that did not happen, even after SUCCEEDED)."""
    value = execution.get("percent")
    if value is None and execution.get("state") == "SUCCEEDED":
        return 100.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0.0, min(100.0, float(value)))
    done, total = execution.get("blocks_acked"), execution.get("blocks_total")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        return max(0.0, min(100.0, 100.0 * done / total))
    return 0.0


def bar(fraction: float, width: int = 30) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress_line(execution: Mapping[str, Any], name_width: int = 16) -> str:
    """One device: name, bar, percent, state/step, blocks, and the reason once it failed."""
    pct = percent_of(execution)
    state = str(execution.get("state") or "?")
    step = execution.get("step")
    status = f"{state}/{step}" if step and state == "IN_PROGRESS" else state
    line = f"{str(execution.get('epn', '?')).ljust(name_width)} {bar(pct / 100)} {pct:5.1f}%  {status}"
    done, total = execution.get("blocks_acked"), execution.get("blocks_total")
    if isinstance(done, int) and isinstance(total, int) and execution.get("mode") != "url":
        line += f"  {done}/{total} blocks"
    reason = execution.get("reason") or execution.get("last_reason")
    if reason and state in TERMINAL and state != "SUCCEEDED":
        line += f"  ({reason})"
    if execution.get("note"):
        line += f"  [note: {execution['note']}]"
    return line


def all_terminal(executions: Sequence[Mapping[str, Any]]) -> bool:
    return bool(executions) and all(e.get("state") in TERMINAL for e in executions)


def watch_summary(executions: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for e in executions:
        counts[str(e.get("state"))] = counts.get(str(e.get("state")), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def rate_line(elapsed: float, first: tuple[float, int], now: tuple[float, int], total: int) -> str:
    """Elapsed time, bytes done of total, rate since the first sample, and the ETA at that rate."""
    (t0, done0), (t1, done1) = first, now
    line = f"elapsed {duration(elapsed)}  {size(done1)} of {size(total)}"
    rate = (done1 - done0) / (t1 - t0) if t1 > t0 else 0.0
    if rate > 0:
        line += f"  {size(rate)}/s  ETA {duration((total - done1) / rate)}"
    elif done1 < total:
        line += "  rate -  ETA -"
    return line
