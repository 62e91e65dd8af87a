"""A delta job's fallback, the pure rules: which package each device takes (table), which pairs of
packages may be combined, the job as a fallback execution receives it, that it is never grouped, and
the estimate's sum of the two rollouts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib import prices
from chalicelib.domain import fallback as rules
from chalicelib.domain import group, pricing
from chalicelib.domain.errors import Conflict, InvalidInput
from chalicelib.domain.models import Device, Execution, Job, Package
from chalicelib.services.fanout import choose

DELTA = Package(upload_id="up-delta", state="AVAILABLE", declared_size=1, created_at=0.0, app="demo",
                version_label="1.1.0", models=("m1",), is_delta=True, base_version="1.0.0", size=300,
                sha256="d" * 64, repository_key="packages/delta")
FULL = Package(upload_id="up-full", state="AVAILABLE", declared_size=1, created_at=0.0, app="demo",
               version_label="1.1.0", models=("m1", "m2"), size=5000, sha256="f" * 64, repository_key="packages/full")


def device(apps: dict[str, str], model: str = "m1", state: str = "REGISTERED") -> Device:
    return Device(epn="dev-1", model=model, state=state, token_sha256="0" * 64, token_expires=0.0, created_at=0.0,
                  apps=apps)


@pytest.mark.parametrize(("target", "fallback", "takes", "why"), [
    (device({"demo": "1.0.0"}), FULL, DELTA, None),  # on the base: the delta
    (device({"demo": "0.9.0"}), FULL, FULL, None),  # another, older base: the full package
    (device({"demo": "1.0.5"}), FULL, FULL, None),  # between base and target: still older than the target
    (device({}), FULL, FULL, None),  # no such app: the full package
    (device({"other": "1.0.0"}), FULL, FULL, None),
    (device({"demo": "1.1.0"}), FULL, DELTA, "device has demo 1.1.0, the delta needs 1.0.0"),  # already there
    (device({"demo": "2.0.0"}), FULL, DELTA, "newer than 1.1.0 (no downgrades)"),  # ahead
    (device({"demo": "0.9.0"}, model="m2"), FULL, DELTA, "device is model m2, package is for m1"),  # wrong model
    (device({"demo": "0.9.0"}, state="DEREGISTERED"), FULL, DELTA, "device is not registered"),
    (None, FULL, DELTA, "device is not registered"),
    (device({"demo": "0.9.0"}), None, DELTA, "device has demo 0.9.0, the delta needs 1.0.0"),  # no fallback: as today
    (device({}), None, DELTA, "device has no demo, the delta needs 1.0.0"),
    (device({"demo": "1.0.0"}), None, DELTA, None),
    (device({"demo": "0.9.0"}), replace(FULL, models=("m2",)), DELTA, "the delta needs 1.0.0"),  # fallback: not for it
])
def test_which_package_a_device_takes(target, fallback, takes, why) -> None:
    package, reason = choose(target, DELTA, fallback)
    assert package is takes
    assert (reason is None) == (why is None) and (why is None or why in reason)


def test_a_full_job_never_falls_back() -> None:
    full = replace(FULL, upload_id="up-job")
    assert choose(device({"demo": "2.0.0"}), full, FULL) == (full, "device has demo 2.0.0, newer than 1.1.0 "
                                                                   "(no downgrades)")


@pytest.mark.parametrize(("package", "fallback", "said"), [
    (FULL, FULL, "only a delta job may name a fallback"),
    (DELTA, DELTA, "the fallback must be a full package"),
    (DELTA, replace(FULL, version_label="1.2.0"), "is demo 1.2.0, the delta makes demo 1.1.0"),
    (DELTA, replace(FULL, app="other"), "is other 1.1.0, the delta makes demo 1.1.0"),
])
def test_pairs_that_are_refused(package, fallback, said) -> None:
    with pytest.raises(InvalidInput, match=said) as err:
        rules.check_pair(package, fallback)
    assert err.value.field == "fallback_package_id"


def test_the_fallback_covers_the_targeted_models_the_delta_is_for() -> None:
    rules.check_pair(DELTA, FULL)
    rules.check_covers(DELTA, FULL, ["m1", "m3"])  # m3: the delta is not for it (SKIPPED anyway)
    with pytest.raises(Conflict, match="not for the targeted model"):
        rules.check_covers(DELTA, replace(FULL, models=("m2",)), ["m1"])


JOB = Job(job_id="job-1", upload_id="up-delta", mode="block", block_size=1024, window=8, stall_seconds=60,
          total_seconds=600, targets=(), target_spec={"model": "m1"}, state="ACTIVE", created_at=0.0, app="demo",
          app_version="1.1.0", package_size=300, package_sha256="d" * 64, repository_key="packages/delta",
          block_count=1, **rules.job_fields(FULL, 1024))
EXECUTION = Execution(execution_id="ex-1", job_id="job-1", epn="dev-1", state="QUEUED", stream=3, mode="block",
                      created_at=0.0, last_activity=0.0)


def test_a_fallback_execution_receives_the_full_package_alone() -> None:
    on_base = rules.delivered(JOB, EXECUTION)
    assert on_base is JOB and group.group_model(on_base, DELTA) == "m1"
    assert group.offered(JOB, DELTA, EXECUTION) is not None
    fell_back = replace(EXECUTION, package_id="up-full")
    seen = rules.delivered(JOB, fell_back)
    assert (seen.upload_id, seen.package_size, seen.package_sha256, seen.repository_key, seen.block_count) == (
        "up-full", 5000, "f" * 64, "packages/full", 5)
    assert rules.delivered(seen, fell_back) == seen  # idempotent
    assert rules.is_fallback_view(seen) and not rules.is_fallback_view(JOB)
    assert group.group_model(seen, replace(FULL, models=("m1",))) is None  # never the delta's group
    assert group.offered(JOB, FULL, fell_back) is None and group.offered(seen, FULL, fell_back) is None
    assert rules.delivered(JOB, replace(EXECUTION, package_id="up-other")) is JOB  # not this job's fallback


def test_two_rollouts_priced_together_add_up() -> None:
    table = prices.load()
    delta = pricing.estimate(pricing.RolloutSpec(300 * 1024, 32 * 1024, 64, 10), table)
    full = pricing.estimate(pricing.RolloutSpec(5 * 1024 * 1024, 32 * 1024, 64, 3), table)
    both = pricing.combined(delta, full)
    assert both.spec.targets == 13 and both.spec.package_size == delta.spec.package_size
    assert both.total == pytest.approx(delta.total + full.total)
    assert both.counts.blocks == delta.counts.blocks + full.counts.blocks == 10 * 10 + 3 * 160
    assert both.counts.seconds == max(delta.counts.seconds, full.counts.seconds)
    assert [line.cost for line in both.lines] == pytest.approx([a.cost + b.cost for a, b in
                                                                zip(delta.lines, full.lines, strict=True)])
