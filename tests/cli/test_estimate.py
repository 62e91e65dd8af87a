"""`ota jobs create --estimate`: one dry-run request, a readable table, exit 0, nothing created."""

from __future__ import annotations

import io
import json

import pytest

from chalicelib import prices
from chalicelib.domain import pricing
from chalicelib.services.estimate import view
from cli.commands import Output
from cli.main import main

from .conftest import FakeApi

SPEC = pricing.RolloutSpec(package_size=10 * 2**20, block_size=32768, window=64, targets=1000, loss=0.02)


def answer() -> dict:
    table = prices.load()
    return view(pricing.estimate(SPEC, table), pricing.iot_jobs_streams(SPEC, table), prices.raw())


def invoke(fake_api: FakeApi, output: Output, argv: list[str]) -> int:
    return main(["--api", fake_api.url, "--token", "secret", *argv], out=output)


@pytest.mark.parametrize(("flags", "path"), [
    ([], "/jobs?dry_run=true"),
    (["--loss", "0.02"], "/jobs?dry_run=true&loss=0.02"),
])
def test_estimate_sends_one_dry_run_and_prints_a_table(fake_api: FakeApi, output: Output, flags: list[str],
                                                       path: str) -> None:
    fake_api.routes[("POST", path)] = (200, answer())
    code = invoke(fake_api, output, ["jobs", "create", "--package", "u-1", "--model", "m1", "--estimate", *flags])
    assert code == 0
    assert [(s.method, s.path) for s in fake_api.seen] == [("POST", path)]
    assert fake_api.seen[0].json() == {"package_id": "u-1", "targets": {"model": "m1"}}
    text = output.stream.getvalue()  # type: ignore[attr-defined]
    assert text.startswith("estimate only, nothing created: 1000 device(s) x 10.0 MiB, block mode")
    assert "IoT Core     messages (5 KB units)" in text
    total = pricing.estimate(SPEC, prices.load()).total
    assert f"total ${total:,.2f}" in text and prices.DEFAULT in text and "AWS IoT Jobs" in text


def test_estimate_json_is_the_api_answer(fake_api: FakeApi) -> None:
    fake_api.routes[("POST", "/jobs?dry_run=true")] = (200, answer())
    out = Output(stream=io.StringIO())
    assert invoke(fake_api, out, ["--json", "jobs", "create", "--package", "u-1", "--device", "d-1", "--estimate"]) == 0
    assert json.loads(out.stream.getvalue()) == json.loads(json.dumps(answer()))  # type: ignore[attr-defined]


def test_loss_without_estimate_is_a_usage_error(fake_api: FakeApi, output: Output,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(fake_api, output, ["jobs", "create", "--package", "u-1", "--model", "m1", "--loss", "0.1"]) == 2
    assert "--loss goes with --estimate" in capsys.readouterr().err
    assert fake_api.seen == []


def test_api_refusal_is_printed_and_exits_non_zero(fake_api: FakeApi, output: Output,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake_api.routes[("POST", "/jobs?dry_run=true")] = (409, {"error": "Conflict", "message": "package is RETIRED"})
    assert invoke(fake_api, output, ["jobs", "create", "--package", "u-1", "--model", "m1", "--estimate"]) == 1
    assert "package is RETIRED" in capsys.readouterr().err
