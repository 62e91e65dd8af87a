"""The demo's checklist (local.outcomes.judge) is pure: every expected outcome can fail on its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from local.outcomes import V1, V2, V3, Facts, judge

DEVICES, OTHERS = ["d1", "d2"], ["o1"]


def _job(succeeded: int, failed: int = 0) -> dict[str, object]:
    return {"counts": {"SUCCEEDED": succeeded, "FAILED": failed, "QUEUED": 0}}


def good() -> Facts:
    return Facts(
        devices=3, verdicts={"v1": "AVAILABLE", "v2": "AVAILABLE", "delta": "AVAILABLE", "m2": "AVAILABLE",
                             "unsigned": "REJECTED"},
        unsigned_reasons=["unsigned: package is unsigned: no signatures"], delta_before_base=(409, "needs"),
        jobs={"v1": _job(2), "delta": _job(2), "m2": _job(1)}, watch_codes={"v1": 0, "delta": 0, "m2": 0},
        downgrade=(409, "no downgrades"),
        histories={"d1": [f"t demo {V1} SUCCEEDED", f"t demo {V2} SUCCEEDED"],
                   "d2": [f"t demo {V1} SUCCEEDED", "t demo 1.0.5 ROLLED_BACK install failed",
                          f"t demo {V2} SUCCEEDED"],
                   "o1": [f"t demo {V1} SUCCEEDED"]},
        current={"d1": V2, "d2": V2, "o1": V1}, inventory={"d1": V2, "d2": V2, "o1": V1},
        other_before={"o1": (0, 0, None, None)},
        command={"runs": [{"epn": e, "state": "SUCCEEDED", "output": f"{e} runs demo {V2}\n"} for e in DEVICES]},
        command_code=0, auto={e: (V3, V3, "SUCCEEDED") for e in DEVICES},
        self_update={e: ("SUCCEEDED", "1.1.0", True) for e in DEVICES})


def test_the_good_facts_pass_every_item() -> None:
    outcomes = judge(good(), DEVICES, OTHERS)
    assert outcomes.ok and len(outcomes.items) == 14 and "✘" not in outcomes.checklist()


@pytest.mark.parametrize(("breaks", "item"), [
    (lambda f: setattr(f, "devices", 2), 0),
    (lambda f: f.verdicts.update(delta="REJECTED"), 1),
    (lambda f: setattr(f, "delta_before_base", (200, "")), 2),
    (lambda f: f.jobs.update(v1=_job(1, 1)), 3),
    (lambda f: f.watch_codes.update(delta=1), 4),
    (lambda f: f.histories.update(d2=[f"t demo {V2}", f"t demo {V1}"]), 5),
    (lambda f: f.inventory.update(d1=V1), 6),
    (lambda f: setattr(f, "unsigned_reasons", []), 7),
    (lambda f: setattr(f, "downgrade", (500, "boom")), 8),
    (lambda f: f.other_before.update(o1=(1, 0, None, None)), 9),
    (lambda f: f.current.update(o1=None), 10),
    (lambda f: f.command["runs"][1].update(state="REJECTED"), 11),
    (lambda f: setattr(f, "command_code", 1), 11),
    (lambda f: f.auto.update(d2=(V2, V2, "FAILED")), 12),
    (lambda f: f.self_update.update(d1=("FAILED", None, True)), 13),
])
def test_each_item_fails_on_its_own(breaks: Callable[[Facts], None], item: int) -> None:
    facts = good()
    breaks(facts)
    outcomes = judge(facts, DEVICES, OTHERS)
    assert not outcomes.ok
    assert [n for n, o in enumerate(outcomes.items) if not o.ok] == [item]
