"""`ota jobs create --fallback PACKAGE`: a delta job's full package for devices off the delta's base, by
upload id or by name, sent as `fallback_package_id`; the estimate says how many devices take it."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import prices
from chalicelib.domain import pricing
from chalicelib.services.estimate import view
from cli.commands import Output
from cli.main import main

from .conftest import FakeApi

JOB = {"job_id": "j-1", "state": "ACTIVE", "package_id": "u-delta", "fallback_package_id": "u-full"}
FULL = {"upload_id": "u-full", "state": "AVAILABLE", "sha256": "ab", "created_at": "t",
        "manifest": {"app": "demo", "version": "1.1.0", "delta": False, "models": ["m1"]}}


def run(api: FakeApi, out: Output, *argv: str) -> int:
    return main(["--api", api.url, "--token", "secret", *argv], out=out)


@pytest.mark.parametrize(("fallback", "routes"), [
    ("u-full", {}),
    ("demo@1.1.0", {("GET", "/packages?app=demo&version=1.1.0&state=AVAILABLE"): (200, {"packages": [FULL]})}),
])
def test_the_fallback_goes_in_the_body(fake_api: FakeApi, output: Output, fallback: str,
                                       routes: dict[tuple[str, str], Any]) -> None:
    fake_api.routes.update({("POST", "/jobs"): (201, JOB), **routes})
    assert run(fake_api, output, "jobs", "create", "--package", "u-delta", "--fallback", fallback,
               "--model", "m1") == 0
    posted = [s for s in fake_api.seen if s.method == "POST"]
    assert posted[0].json() == {"package_id": "u-delta", "fallback_package_id": "u-full",
                                "targets": {"model": "m1"}}


def test_without_it_nothing_is_added(fake_api: FakeApi, output: Output) -> None:
    fake_api.routes[("POST", "/jobs")] = (201, JOB)
    assert run(fake_api, output, "jobs", "create", "--package", "u-delta", "--device", "d-1") == 0
    assert "fallback_package_id" not in fake_api.seen[0].json()


def test_the_estimate_names_the_fallback_devices(fake_api: FakeApi, output: Output) -> None:
    spec = pricing.RolloutSpec(300_000, 32768, 64, 10)
    answer = {**view(pricing.estimate(spec, prices.load()), pricing.iot_jobs_streams(spec, prices.load()),
                     prices.raw()), "fallback": {"package_id": "u-full", "package_size": 5 * 1024 * 1024, "targets": 4}}
    fake_api.routes[("POST", "/jobs?dry_run=true")] = (200, answer)
    assert run(fake_api, output, "jobs", "create", "--package", "u-delta", "--fallback", "u-full", "--model", "m1",
               "--estimate") == 0
    assert fake_api.seen[0].json()["fallback_package_id"] == "u-full"
    assert "of them 4 take the fallback u-full (5.0 MiB)" in output.stream.getvalue()  # type: ignore[attr-defined]
