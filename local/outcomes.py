"""The demo's expected outcomes: what the scenario observed (Facts) and the checklist judged from it.

`judge` is the one place that decides whether the demo worked; local/demo.py collects the Facts,
tests/e2e/test_scenario.py asserts on the result. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

APP = "demo"
MODEL, OTHER_MODEL = "demo-m1", "demo-m2"
V1, V2, V3 = "1.0.0", "1.1.0", "1.2.0"
MCU_MODEL, MCU_APP = "demo-mcu", "demo-fw"  # the MCU device (mcu/'s host build) and its firmware


@dataclass
class Facts:
    """What the scenario observed; judged only in `judge`."""

    devices: int = 0
    verdicts: dict[str, str] = field(default_factory=dict)  # v1, v2, delta, unsigned -> state
    unsigned_reasons: list[str] = field(default_factory=list)
    delta_before_base: tuple[int, str] = (0, "")
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # v1, delta -> job view
    watch_codes: dict[str, int] = field(default_factory=dict)
    downgrade: tuple[int, str] = (0, "")
    histories: dict[str, list[str]] = field(default_factory=dict)
    current: dict[str, str | None] = field(default_factory=dict)  # install_root/<app>/current
    inventory: dict[str, str | None] = field(default_factory=dict)  # the API's device apps
    # the other model's devices after the first model's jobs: (executions, history lines, current, inventory)
    other_before: dict[str, tuple[int, int, str | None, str | None]] = field(default_factory=dict)
    command: dict[str, Any] = field(default_factory=dict)  # the run-script command to the model, as shown
    command_code: int | None = None  # `ota commands send --wait` exit status
    auto: dict[str, tuple[str | None, str | None, str | None]] = field(default_factory=dict)  # after the release:
    # epn -> (current, inventory, state of its automatic execution)
    self_update: dict[str, tuple[str | None, str | None, bool]] = field(default_factory=dict)
    # epn -> (execution state, installed agent version, agent process alive)
    mcu: dict[str, tuple[bool, str | None, bool]] = field(default_factory=dict)  # after its firmware job:
    # epn -> (primary slot holds the new image with image_ok set, inventory version, log shows swap and reboot)


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Outcomes:
    items: tuple[Outcome, ...]
    facts: Facts = field(default_factory=Facts)

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(o.ok for o in self.items)

    def checklist(self) -> str:
        return "\n".join(f"{'✔' if o.ok else '✘'} {o.name}" + (f"  ({o.detail})" if o.detail else "")
                         for o in self.items)


def _succeeded(job: dict[str, Any] | None, count: int) -> tuple[bool, str]:
    counts = (job or {}).get("counts", {})
    return counts.get("SUCCEEDED") == count == sum(counts.values()), str({k: v for k, v in counts.items() if v})


def installed(lines: list[str]) -> list[str]:
    """The versions a history.txt says were installed (`<stamp> <app> <version> SUCCEEDED`), in order."""
    return [ln.split()[2] for ln in lines if len(ln.split()) >= 4 and ln.split()[3] == "SUCCEEDED"]


def judge(f: Facts, model_epns: list[str], other_epns: list[str], mcu_epns: list[str] | None = None) -> Outcomes:
    """The checklist: every expected outcome, checked explicitly (the MCU line only if `mcu_epns` took part)."""
    v1_ok, v1_counts = _succeeded(f.jobs.get("v1"), len(model_epns))
    d_ok, d_counts = _succeeded(f.jobs.get("delta"), len(model_epns))
    order_bad = [e for e in model_epns if installed(f.histories.get(e, [])) != [V1, V2]]
    not_current = [e for e in model_epns if f.current.get(e) != V2 or f.inventory.get(e) != V2]
    touched = [e for e in other_epns if f.other_before.get(e, (1,)) != (0, 0, None, None)]
    own_ok, own_counts = _succeeded(f.jobs.get("m2"), len(other_epns))
    own_bad = [e for e in other_epns if installed(f.histories.get(e, [])) != [V1]
               or f.current.get(e) != V1]
    signed = ("v1", "v2", "delta", "m2")
    runs = f.command.get("runs", [])
    cmd_bad = [r.get("epn", "?") for r in runs if r.get("state") != "SUCCEEDED"
               or f"{r.get('epn')} runs demo {V2}" not in (r.get("output") or "")]
    cmd_ok = len(runs) == len(model_epns) and not cmd_bad and f.command_code == 0
    auto_bad = [e for e in model_epns if f.auto.get(e) != (V3, V3, "SUCCEEDED")]
    su_bad = [e for e in model_epns if f.self_update.get(e) != ("SUCCEEDED", "1.1.0", True)]
    items = [
        Outcome(f"{len(model_epns)} + {len(other_epns)} agents registered", f.devices == len(model_epns)
                + len(other_epns), f"{f.devices} REGISTERED"),
        Outcome(f"signed 1.0.0, 1.1.0, the delta and 1.0.0 for {OTHER_MODEL} AVAILABLE after the scan",
                all(f.verdicts.get(k) == "AVAILABLE" for k in signed),
                ", ".join(f"{k} {f.verdicts.get(k)}" for k in signed)),
        Outcome("delta job refused while devices lack its base version (4xx)",
                400 <= f.delta_before_base[0] < 500, f"HTTP {f.delta_before_base[0]}"),
        Outcome(f"job 1.0.0 (block mode, by model): all {len(model_epns)} SUCCEEDED",
                v1_ok and f.watch_codes.get("v1") == 0, v1_counts),
        Outcome(f"delta job 1.0.0 -> 1.1.0: all {len(model_epns)} SUCCEEDED",
                d_ok and f.watch_codes.get("delta") == 0, d_counts),
        Outcome("every history.txt lists 1.0.0 then 1.1.0", not order_bad, ", ".join(order_bad)),
        Outcome("installed and reported current version is 1.1.0 everywhere", not not_current,
                ", ".join(not_current)),
        Outcome("unsigned package REJECTED at the scan with reasons",
                f.verdicts.get("unsigned") == "REJECTED" and bool(f.unsigned_reasons), "; ".join(f.unsigned_reasons)),
        Outcome("downgrade job (1.0.0 to devices on 1.1.0) refused with a 4xx", 400 <= f.downgrade[0] < 500,
                f"HTTP {f.downgrade[0]}"),
        Outcome(f"other model ({OTHER_MODEL}) untouched by those jobs: no execution, no history, no app",
                not touched, ", ".join(touched)),
        Outcome(f"then its own package (one job for model {OTHER_MODEL}): SUCCEEDED, history lists only it",
                own_ok and f.watch_codes.get("m2") == 0 and not own_bad, " ".join([own_counts, *own_bad])),
    ]
    items += [
        Outcome(f"signed run-script command to every {MODEL} device: all SUCCEEDED with their output",
                cmd_ok, ", ".join(cmd_bad) or f"{len(runs)} run(s), ota exit {f.command_code}"),
        Outcome(f"release {APP} {V3} published for {MODEL}/stable: every device installed it by itself "
                "(an execution each, SUCCEEDED)", not auto_bad and bool(f.auto), ", ".join(auto_bad)),
        Outcome(f"agent self-update to ota-agent 1.1.0 on every {MODEL} device: restarted into it, confirmed, "
                "SUCCEEDED", not su_bad and bool(f.self_update), ", ".join(su_bad)),
    ]
    if mcu_epns:
        mcu_ok, mcu_counts = _succeeded(f.jobs.get("mcu"), len(mcu_epns))
        mcu_bad = [e for e in mcu_epns if f.mcu.get(e) != (True, V2, True)]
        items.append(Outcome(f"MCU device ({MCU_MODEL}, the C library's host build): signed MCUboot image {MCU_APP} "
                             f"{V2} by a block-mode job, swapped, confirmed after its reboot, SUCCEEDED",
                             mcu_ok and f.watch_codes.get("mcu") == 0 and not mcu_bad,
                             " ".join([mcu_counts, *mcu_bad])))
    return Outcomes(tuple(items), f)
