"""Rendering of progress lines and tables (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from cli import render


@pytest.mark.parametrize(("execution", "present", "absent"), [
    ({"epn": "d1", "state": "IN_PROGRESS", "step": "DOWNLOADING", "blocks_acked": 5, "blocks_total": 10},
     ["d1", " 50.0%", "IN_PROGRESS/DOWNLOADING", "5/10 blocks", "[" + "#" * 15 + "." * 15 + "]"], []),
    ({"epn": "d1", "state": "SUCCEEDED", "mode": "url", "blocks_acked": 0, "blocks_total": 9},
     ["100.0%", "SUCCEEDED"], ["blocks"]),
    ({"epn": "d1", "state": "FAILED", "percent": 40, "reason": "hash mismatch"},
     [" 40.0%", "FAILED", "(hash mismatch)"], []),
    ({"epn": "d1", "state": "IN_PROGRESS", "percent": 250, "reason": "ignored while running"},
     ["100.0%"], ["ignored"]),
    ({"epn": "d1", "state": "QUEUED"}, ["  0.0%", "QUEUED"], ["blocks"]),
    ({"epn": "d1", "state": "SUCCEEDED", "percent": 0.0, "blocks_acked": 0, "blocks_total": 9,
      "note": "SUCCEEDED before the device acknowledged every block"},
     ["  0.0%", "SUCCEEDED", "0/9 blocks", "[note: SUCCEEDED before"], ["100.0%"]),
])
def test_progress_line(execution: dict[str, Any], present: list[str], absent: list[str]) -> None:
    line = render.progress_line(execution)
    assert all(p in line for p in present), line
    assert not any(a in line for a in absent), line


@pytest.mark.parametrize(("executions", "terminal"), [
    ([], False),
    ([{"state": "SUCCEEDED"}, {"state": "IN_PROGRESS"}], False),
    ([{"state": s} for s in render.TERMINAL], True),
])
def test_all_terminal(executions: list[dict[str, Any]], terminal: bool) -> None:
    assert render.all_terminal(executions) is terminal


def test_table_aligns_and_shows_missing_values_as_dash() -> None:
    text = render.table([{"a": "x", "b": {"k": 1}}, {"a": "longer", "b": None}], [("A", "a"), ("B", "b"),
                                                                                    ("C", "c.d")])
    assert text.splitlines() == ["A       B    C", "x       k=1  -", "longer  -    -"]
