"""`ota` explains itself: help with defaults, bounds and an example on every command, the exit codes in
`ota --help`, `--version`, JSON errors with --json, packages named app@version, watch with elapsed
time, rate and ETA."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from cli import refs
from cli.client import ApiClient, Target, UsageError
from cli.commands import Output
from cli.main import main
from cli.parser import build_parser

from .conftest import FakeApi, Tty

COMMANDS = [("devices", a) for a in ("add", "list", "show", "rm")] + [("keys", a) for a in ("add", "list", "rm")] \
    + [("packages", a) for a in ("upload", "list", "show", "retire")] \
    + [("jobs", a) for a in ("create", "list", "show", "cancel", "watch")]


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_an_example_and_every_option_a_help(command: tuple[str, str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, *command)
    assert "example" in text and f"ota {' '.join(command)}" in text.split("example")[1]
    parser = build_parser()._subparsers._group_actions[0].choices[command[0]]  # type: ignore[union-attr]
    sub = parser._subparsers._group_actions[0].choices[command[1]]  # type: ignore[union-attr]
    for action in sub._actions:
        assert action.help, (command, action.dest)


def test_top_help_states_the_exit_codes_and_bounds_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    for line in ("0  done", "1  refused", "2  bad usage", "3  the API cannot be reached"):
        assert line in text
    create = _help(capsys, "jobs", "create")
    assert "256..122880 (32768)" in create and "1..100 (64)" in create
    assert "(default: 300.0)" in _help(capsys, "packages", "upload")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("ota ")


@pytest.mark.parametrize(("argv", "routes", "code", "error"), [
    (["devices", "add", "a/b", "--model", "m"],
     {("POST", "/devices"): (400, {"error": "InvalidInput", "message": "bad epn", "field": "epn"})},
     1, {"code": "InvalidInput", "message": "bad epn", "field": "epn", "status": 400}),
    (["jobs", "create", "--package", "u-1", "--window", "0", "--model", "m"], {}, 2,
     {"code": "UsageError", "field": None, "status": None}),
    (["jobs", "frobnicate"], {}, 2, {"code": "UsageError", "field": None, "status": None}),
])
def test_json_errors_are_json_on_stderr(fake_api: FakeApi, capsys: pytest.CaptureFixture[str], argv: list[str],
                                        routes: dict[Any, Any], code: int, error: dict[str, Any]) -> None:
    fake_api.routes.update(routes)
    assert main(["--json", "--api", fake_api.url, "--token", "t", *argv], out=Output(stream=io.StringIO())) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    got = json.loads(captured.err)["error"]
    assert {k: got[k] for k in error} == error and got["message"]


PACKAGES = [
    {"upload_id": "up-full-m1", "sha256": "a", "created_at": "1",
     "manifest": {"app": "demo", "version": "1.1.0", "delta": False, "models": ["m1"]}},
    {"upload_id": "up-full-m2", "sha256": "b", "created_at": "2",
     "manifest": {"app": "demo", "version": "1.1.0", "delta": False, "models": ["m2"]}},
    {"upload_id": "up-delta", "sha256": "c", "created_at": "3",
     "manifest": {"app": "demo", "version": "1.1.0", "delta": True, "base_version": "1.0.0", "models": ["m1"]}},
    {"upload_id": "up-twice-1", "sha256": "d", "created_at": "4",
     "manifest": {"app": "other", "version": "2.0.0", "delta": False, "models": ["m1"]}},
    {"upload_id": "up-twice-2", "sha256": "d", "created_at": "5",
     "manifest": {"app": "other", "version": "2.0.0", "delta": False, "models": ["m1"]}},
]


@pytest.mark.parametrize(("ref", "model", "expected"), [
    ("up-anything", None, "up-anything"),
    ("demo@1.1.0:m2", None, "up-full-m2"),
    ("demo@1.1.0", "m1", "up-full-m1"),
    ("demo@1.0.0..1.1.0", None, "up-delta"),
    ("other@2.0.0", None, "up-twice-1"),  # the same bytes uploaded twice are one package: the first
    ("demo@1.1.0", None, UsageError("names 2 packages")),
    ("demo@9.9.9", None, UsageError("no AVAILABLE package is demo@9.9.9")),
    ("demo@latest", None, UsageError("is not an upload id")),
])
def test_package_names_resolve_to_exactly_one_upload(fake_api: FakeApi, ref: str, model: str | None,
                                                     expected: str | Exception) -> None:
    def listing(seen: Any) -> tuple[int, Any]:
        query = dict(part.split("=") for part in seen.path.split("?")[1].split("&"))
        found = [p for p in PACKAGES if p["manifest"]["app"] == query["app"]
                 and p["manifest"]["version"] == query["version"]]
        return 200, {"packages": found}

    for path in ("/packages?app=demo&version=1.1.0&state=AVAILABLE", "/packages?app=demo&version=9.9.9&state=AVAILABLE",
                 "/packages?app=other&version=2.0.0&state=AVAILABLE"):
        fake_api.routes[("GET", path)] = listing
    api = ApiClient(Target(fake_api.url, "t"))
    if isinstance(expected, Exception):
        with pytest.raises(type(expected), match=str(expected)):
            refs.resolve(api, ref, model)
    else:
        assert refs.resolve(api, ref, model) == expected


def test_jobs_create_takes_a_package_name(fake_api: FakeApi) -> None:
    fake_api.routes[("GET", "/packages?app=demo&version=1.1.0&state=AVAILABLE")] = (200, {"packages": PACKAGES[:3]})
    fake_api.routes[("POST", "/jobs")] = (201, {"job_id": "j-1", "state": "ACTIVE"})
    out = Output(stream=io.StringIO())
    assert main(["--api", fake_api.url, "--token", "t", "jobs", "create", "--package", "demo@1.1.0",
                 "--model", "m2"], out=out) == 0
    assert fake_api.seen[-1].json()["package_id"] == "up-full-m2"


def test_watch_shows_elapsed_rate_and_eta(fake_api: FakeApi) -> None:
    ticks = iter(float(t) for t in range(1000))
    job = {"job_id": "j-1", "app": "demo", "version": "1.1.0", "bytes_total": 1000 * 1024}
    fake_api.routes[("GET", "/jobs/j-1")] = [(200, {**job, "bytes_done": d * 1024}) for d in (0, 0, 250, 500, 1000)]
    fake_api.routes[("GET", "/jobs/j-1/executions")] = [
        (200, {"executions": [{"epn": "d", "state": s, "blocks_acked": a, "blocks_total": 4}]})
        for s, a in (("IN_PROGRESS", 0), ("IN_PROGRESS", 1), ("IN_PROGRESS", 2), ("SUCCEEDED", 4))]
    out = Output(stream=Tty(), sleep=lambda _s: None, clock=lambda: next(ticks))
    assert main(["--api", fake_api.url, "--token", "t", "jobs", "watch", "j-1", "--interval", "0"], out=out) == 0
    text = out.stream.getvalue()  # type: ignore[attr-defined]
    assert "job j-1: demo 1.1.0" in text
    assert "elapsed 0:" in text and "KiB/s  ETA 0:" in text and "elapsed" in text.splitlines()[-1]


def test_upload_shows_byte_progress_on_a_terminal(fake_api: FakeApi) -> None:
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    package = fixtures / "good-full-1.0.0.otapkg"
    fake_api.routes[("GET", "/keys")] = (200, {"keys": [{"public_key": (fixtures / "publisher.pub").read_text()}]})
    fake_api.routes[("POST", "/packages")] = (201, {"upload_id": "u-7", "url": f"{fake_api.url}/s3/u-7"})
    fake_api.routes[("PUT", "/s3/u-7")] = (200, b"")
    fake_api.routes[("GET", "/packages/u-7")] = (200, {"upload_id": "u-7", "state": "AVAILABLE"})
    out = Output(stream=Tty(), sleep=lambda _s: None)
    assert main(["--api", fake_api.url, "--token", "t", "packages", "upload", str(package)], out=out) == 0
    text = out.stream.getvalue()  # type: ignore[attr-defined]
    assert "upload: 100%" in text and "4.68k/4.68k" in text, text[-400:]
