"""The demo's scenario (local.demo.run_scenario) as assertions, on its own stack, with 2 + 1 agents."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from local.demo import Options, run_scenario
from local.scenario import Session

from .conftest import WAIT, own_stack

pytestmark = pytest.mark.e2e


def test_the_demo_scenario_meets_every_expected_outcome(tmp_path: Path) -> None:
    log = io.StringIO()
    with own_stack(tmp_path / "stack") as state:
        session = Session(state, tmp_path, stream=log)
        try:
            outcomes = run_scenario(session, Options(devices=2, others=1, size=256 * 1024, block_size=8192,
                                                     window=16, timeout=WAIT))
        finally:
            session.stop_agents()
    assert outcomes.ok, outcomes.checklist() + "\n" + log.getvalue()[-4000:]
    assert len(outcomes.items) == 14
    facts = outcomes.facts
    assert "the delta needs 1.0.0" in facts.delta_before_base[1]
    assert "no downgrades" in facts.downgrade[1]
    assert facts.jobs["delta"]["bytes_total"] < facts.jobs["v1"]["bytes_total"] / 4  # the delta is what travels
    assert "REJECTED" in log.getvalue() and "unsigned" in log.getvalue()
