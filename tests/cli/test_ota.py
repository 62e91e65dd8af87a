"""`ota` against a fake API: each command's request, its output (text and --json) and its exit status."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from cli.client import resolve
from cli.commands import Output
from cli.main import main

from .conftest import FakeApi, Seen, Tty

DEVICE = {"epn": "dev-1", "model": "m1", "state": "REGISTERED", "agent_version": "1.0.0", "apps": {"demo": "1.0"}}
JOB = {"job_id": "j-1", "state": "IN_PROGRESS", "package_id": "u-1", "mode": "block", "counts": {"QUEUED": 1},
       "percent": 0}

# argv, route replies, expected (method, path, json body), exit code, text that must be printed
CASES: list[tuple[list[str], dict[tuple[str, str], Any], tuple[str, str, Any], int, str]] = [
    (["devices", "add", "dev-1", "--model", "m1"],
     {("POST", "/devices"): (201, {"epn": "dev-1", "model": "m1", "registration_token": "tok-123"})},
     ("POST", "/devices", {"epn": "dev-1", "model": "m1"}), 0, "tok-123"),
    (["devices", "list"], {("GET", "/devices"): (200, {"devices": [DEVICE]})},
     ("GET", "/devices?limit=1000", None), 0, "dev-1  m1     REGISTERED"),
    (["devices", "list", "--model", "m1"], {("GET", "/devices?model=m1"): (200, {"devices": []})},
     ("GET", "/devices?model=m1&limit=1000", None), 0, "(none)"),
    (["devices", "rm", "dev-1"], {("DELETE", "/devices/dev-1"): (200, {"epn": "dev-1", "state": "DEREGISTERED"})},
     ("DELETE", "/devices/dev-1", None), 0, "DEREGISTERED"),
    (["keys", "list"], {("GET", "/keys"): (200, {"keys": [{"key_id": "k1", "name": "release"}]})},
     ("GET", "/keys", None), 0, "k1      release"),
    (["keys", "rm", "k1"], {("DELETE", "/keys/k1"): (200, {})}, ("DELETE", "/keys/k1", None), 0, "removed"),
    (["packages", "list", "--app", "demo"], {("GET", "/packages?app=demo"): (200, {"packages": [
        {"upload_id": "u-1", "state": "AVAILABLE", "manifest": {"app": "demo", "version": "1.2.0"}, "size": 9}]})},
     ("GET", "/packages?app=demo&limit=1000", None), 0, "u-1        AVAILABLE  demo  1.2.0"),
    (["packages", "show", "u-1"], {("GET", "/packages/u-1"): (200, {"upload_id": "u-1", "state": "REJECTED",
                                                                     "reasons": ["bad signature"]})},
     ("GET", "/packages/u-1", None), 0, "bad signature"),
    (["packages", "retire", "u-1"], {("POST", "/packages/u-1/retire"): (200, {"state": "RETIRED"})},
     ("POST", "/packages/u-1/retire", {}), 0, "retired"),
    (["jobs", "create", "--package", "u-1", "--device", "dev-1", "--device", "dev-2", "--mode", "block",
      "--block-size", "4096", "--window", "32"], {("POST", "/jobs"): (201, JOB)},
     ("POST", "/jobs", {"package_id": "u-1", "targets": {"devices": ["dev-1", "dev-2"]}, "mode": "block",
                        "block_size": 4096, "window": 32}), 0, "ota jobs watch j-1"),
    (["jobs", "create", "--package", "u-1", "--model", "m1", "--stall-seconds", "60"],
     {("POST", "/jobs"): (201, JOB)},
     ("POST", "/jobs", {"package_id": "u-1", "targets": {"model": "m1"}, "timeouts": {"stall_seconds": 60}}),
     0, "j-1"),
    (["jobs", "create", "--package", "u-1", "--model", "m1", "--wave-size", "100"], {("POST", "/jobs"): (201, JOB)},
     ("POST", "/jobs", {"package_id": "u-1", "targets": {"model": "m1"}, "waves": {"size": 100}}), 0, "j-1"),
    (["jobs", "create", "--package", "u-1", "--model", "m1", "--wave-percent", "10", "--wave-pause", "300"],
     {("POST", "/jobs"): (201, JOB)},
     ("POST", "/jobs", {"package_id": "u-1", "targets": {"model": "m1"},
                        "waves": {"percent": 10, "pause_seconds": 300}}), 0, "j-1"),
    (["jobs", "create", "--package", "u-1", "--model", "m1", "--wave-size", "5", "--wave-interval", "60"],
     {("POST", "/jobs"): (201, JOB)},
     ("POST", "/jobs", {"package_id": "u-1", "targets": {"model": "m1"},
                        "waves": {"size": 5, "interval_seconds": 60}}), 0, "j-1"),
    (["jobs", "list"], {("GET", "/jobs"): (200, {"jobs": [JOB]})}, ("GET", "/jobs?limit=1000", None), 0, "j-1"),
    (["jobs", "show", "j-1"], {("GET", "/jobs/j-1"): (200, JOB)}, ("GET", "/jobs/j-1", None), 0, "IN_PROGRESS"),
    (["jobs", "show", "j-1", "--device", "dev-1"], {("GET", "/jobs/j-1/executions/dev-1"): (200, {
        "epn": "dev-1", "state": "FAILED", "timeline": [{"at": "t1", "state": "FAILED", "reason": "hash mismatch"}]})},
     ("GET", "/jobs/j-1/executions/dev-1", None), 0, "hash mismatch"),
    (["jobs", "cancel", "j-1"], {("POST", "/jobs/j-1/cancel"): (200, {**JOB, "state": "CANCELED"})},
     ("POST", "/jobs/j-1/cancel", {}), 0, "CANCELED"),
]


def _run(api: FakeApi, argv: list[str], out: Output, token: str | None = "secret") -> int:
    return main(["--api", api.url, *(["--token", token] if token else []), *argv], out=out)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(("argv", "routes", "expected", "code", "text"), CASES, ids=lambda v: None)
def test_command_sends_the_request_and_prints_the_answer(fake_api: FakeApi, output: Output, argv: list[str],
                                                         routes: dict[Any, Any], expected: tuple[str, str, Any],
                                                         code: int, text: str) -> None:
    fake_api.routes.update(routes)
    assert _run(fake_api, argv, output) == code
    request = fake_api.seen[0]
    assert (request.method, request.path, request.json()) == expected
    assert request.headers["Authorization"] == "Bearer secret"
    assert text in output.stream.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("argv", "routes", "expected", "code", "text"), CASES, ids=lambda v: None)
def test_json_output_is_the_api_answer(fake_api: FakeApi, output: Output, argv: list[str], routes: dict[Any, Any],
                                       expected: tuple[str, str, Any], code: int, text: str) -> None:
    answers = [r for r in routes.values()]
    fake_api.routes.update(routes)
    assert _run(fake_api, ["--json", *argv], output) == code
    shown = json.loads(output.stream.getvalue())  # type: ignore[attr-defined]
    if isinstance(shown, dict) and shown.get("next_cursor", "absent") is None:
        del shown["next_cursor"]  # a listing the CLI followed to its end: every item, no cursor left
    assert shown == answers[0][1]


def test_json_flag_may_follow_the_command(fake_api: FakeApi, output: Output) -> None:
    fake_api.routes[("GET", "/keys")] = (200, {"keys": []})
    assert main(["keys", "list", "--json", "--api", fake_api.url], out=output, environ={}) == 0
    assert json.loads(output.stream.getvalue()) == {"keys": []}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("status", "body", "code", "line"), [
    (400, {"error": "InvalidInput", "message": "field 'model' must match ^[A-Za-z0-9_-]{1,64}$"}, 1,
     "error: field 'model' must match ^[A-Za-z0-9_-]{1,64}$"),
    (401, {"message": "Unauthorized"}, 1, "error: Unauthorized"),
    (409, {"error": "Conflict", "message": "device dev-1 exists with model m2"}, 1,
     "error: device dev-1 exists with model m2"),
    (404, b"<html>nope</html>", 1, "error: HTTP 404 Not Found: <html>nope</html>"),
    (503, {"error": "ServiceUnavailable", "message": "retry later"}, 2, "error: retry later"),
])
def test_api_errors_print_one_line_and_exit_non_zero(fake_api: FakeApi, output: Output,
                                                     capsys: pytest.CaptureFixture[str], status: int, body: Any,
                                                     code: int, line: str) -> None:
    fake_api.routes[("POST", "/devices")] = (status, body)
    assert _run(fake_api, ["devices", "add", "dev-1", "--model", "m1"], output) == code
    err = capsys.readouterr().err
    assert err.splitlines() == [line]


def test_unreachable_api_exits_3(output: Output, capsys: pytest.CaptureFixture[str]) -> None:
    from local.procs import free_port

    assert main(["--api", f"http://127.0.0.1:{free_port()}", "devices", "list"], out=output) == 3
    assert capsys.readouterr().err.startswith("error: cannot reach the API")


@pytest.mark.parametrize(("argv", "line"), [
    (["jobs", "create", "--package", "u-1"], "error: give either --device EPN (one or more) or --model M"),
    (["jobs", "create", "--package", "u-1", "--model", "m", "--device", "d"], "error: give either"),
    (["jobs", "create", "--package", "u-1", "--model", "m", "--wave-pause", "5"],
     "error: --wave-pause and --wave-interval go with --wave-size or --wave-percent"),
    (["keys", "add", "/nonexistent.pem", "--name", "k"], "error: cannot read public key /nonexistent.pem"),
    (["packages", "upload", "/nonexistent.ota"], "error: cannot read package /nonexistent.ota"),
])
def test_bad_usage_exits_2_without_calling_the_api(fake_api: FakeApi, output: Output,
                                                   capsys: pytest.CaptureFixture[str], argv: list[str],
                                                   line: str) -> None:
    assert _run(fake_api, argv, output) == 2
    assert capsys.readouterr().err.startswith(line)
    assert fake_api.seen == []


def test_missing_api_url_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no API URL"):
        resolve(None, None, tmp_path, environ={})


@pytest.mark.parametrize(("flags", "environ", "stack", "expected"), [
    (("http://flag", "t-flag"), {"OTA_API_URL": "http://env", "OTA_TOKEN": "t-env"}, None, ("http://flag", "t-flag")),
    ((None, None), {"OTA_API_URL": "http://env/", "OTA_TOKEN": "t-env"}, None, ("http://env", "t-env")),
    ((None, None), {}, {"api_url": "http://stack", "token": "t-stack"}, ("http://stack", "t-stack")),
    ((None, "t-flag"), {}, {"api_url": "http://stack", "token": "t-stack"}, ("http://stack", "t-flag")),
])
def test_where_url_and_token_come_from(tmp_path: Path, flags: tuple[str | None, str | None], environ: dict[str, str],
                                       stack: dict[str, str] | None, expected: tuple[str, str]) -> None:
    if stack:
        (tmp_path / "stack.json").write_text(json.dumps(stack))
    target = resolve(*flags, tmp_path, environ=environ)
    assert (target.api, target.token) == expected


def test_keys_add_sends_the_pem(fake_api: FakeApi, output: Output, tmp_path: Path) -> None:
    pem = tmp_path / "pub.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
    fake_api.routes[("POST", "/keys")] = (201, {"key_id": "k9", "name": "rel"})
    assert _run(fake_api, ["keys", "add", str(pem), "--name", "rel"], output) == 0
    assert fake_api.seen[0].json() == {"public_key": pem.read_text(), "name": "rel"}
    assert "k9" in output.stream.getvalue()  # type: ignore[attr-defined]


def test_idempotency_key_header(fake_api: FakeApi, output: Output) -> None:
    fake_api.routes[("POST", "/jobs")] = (201, JOB)
    assert _run(fake_api, ["jobs", "create", "--package", "u", "--model", "m", "--idempotency-key", "k-1"],
                output) == 0
    assert fake_api.seen[0].headers["Idempotency-Key"] == "k-1"


def test_ids_are_escaped_in_paths(fake_api: FakeApi, output: Output) -> None:
    assert _run(fake_api, ["devices", "show", "../keys"], output) == 1
    assert fake_api.seen[0].path == "/devices/..%2Fkeys"


@pytest.mark.parametrize(("verdict", "code", "text"), [
    ({"state": "AVAILABLE", "manifest": {"app": "demo", "version": "2.0.0"}, "sha256": "ab"}, 0,
     "AVAILABLE: demo 2.0.0 as u-7"),
    ({"state": "REJECTED", "reasons": ["signature: unknown key", "path traversal: ../x"]}, 1,
     "REJECTED: u-7\n  - signature: unknown key\n  - path traversal: ../x"),
])
def test_packages_upload_puts_the_file_and_waits_for_the_verdict(fake_api: FakeApi, output: Output, tmp_path: Path,
                                                                 verdict: dict[str, Any], code: int,
                                                                 text: str) -> None:
    package = tmp_path / "demo.ota"
    package.write_bytes((FIXTURES / "good-full-1.0.0.otapkg").read_bytes())
    fake_api.routes[("GET", "/keys")] = (200, {"keys": [{"public_key": (FIXTURES / "publisher.pub").read_text()}]})
    fake_api.routes[("POST", "/packages")] = (201, {"upload_id": "u-7", "url": f"{fake_api.url}/s3/u-7",
                                                    "method": "PUT"})
    fake_api.routes[("PUT", "/s3/u-7")] = (200, b"")
    fake_api.routes[("GET", "/packages/u-7")] = [(200, {"upload_id": "u-7", "state": "PENDING"}),
                                                 (200, {"upload_id": "u-7", "state": "PENDING"}),
                                                 (200, {"upload_id": "u-7", **verdict})]
    assert _run(fake_api, ["packages", "upload", str(package)], output) == code
    assert fake_api.seen[1].json() == {"size": package.stat().st_size,
                                       "sha256": hashlib.sha256(package.read_bytes()).hexdigest()}
    put = fake_api.seen[2]
    assert (put.method, put.body, "Authorization" in put.headers) == ("PUT", package.read_bytes(), False)
    assert [s.path for s in fake_api.seen[3:]] == ["/packages/u-7"] * 3
    assert text in output.stream.getvalue()  # type: ignore[attr-defined]


def _executions(*states: tuple[str, str, int]) -> tuple[int, dict[str, Any]]:
    return 200, {"executions": [{"epn": epn, "state": state, "step": "DOWNLOADING" if state == "IN_PROGRESS" else None,
                                 "blocks_acked": acked, "blocks_total": 10} for epn, state, acked in states]}


@pytest.mark.parametrize(("final", "code"), [("SUCCEEDED", 0), ("FAILED", 1), ("TIMED_OUT", 1)])
@pytest.mark.parametrize("tty", [False, True])
def test_jobs_watch_ends_when_all_executions_are_terminal(fake_api: FakeApi, final: str, code: int,
                                                          tty: bool) -> None:
    fake_api.routes[("GET", "/jobs/j-1")] = (200, JOB)
    fake_api.routes[("GET", "/jobs/j-1/executions")] = [
        _executions(("dev-1", "QUEUED", 0), ("dev-2", "QUEUED", 0)),
        _executions(("dev-1", "IN_PROGRESS", 5), ("dev-2", "IN_PROGRESS", 2)),
        _executions(("dev-1", "SUCCEEDED", 10), ("dev-2", "IN_PROGRESS", 7)),
        _executions(("dev-1", "SUCCEEDED", 10), ("dev-2", final, 10 if final == "SUCCEEDED" else 7)),
    ]
    out = Output(stream=Tty() if tty else io.StringIO(), sleep=lambda _s: None)
    assert _run(fake_api, ["jobs", "watch", "j-1", "--interval", "0"], out) == code
    text = out.stream.getvalue()  # type: ignore[attr-defined]
    assert ("\x1b[" in text) is tty
    assert f"dev-2            [{'#' * 15}{'.' * 15}]  50.0%" not in text  # no such progress was reported
    assert "dev-2            [#####################.........]  70.0%  IN_PROGRESS/DOWNLOADING  7/10 blocks" in text
    assert "1 SUCCEEDED" in text.splitlines()[-1] or "2 SUCCEEDED" in text.splitlines()[-1]
    if not tty:
        assert sum("dev-1" in line for line in text.splitlines()) == 3  # one line per change, not per poll


def test_jobs_watch_json_prints_one_object_per_change(fake_api: FakeApi, output: Output) -> None:
    fake_api.routes[("GET", "/jobs/j-1")] = (200, JOB)
    fake_api.routes[("GET", "/jobs/j-1/executions")] = [_executions(("dev-1", "IN_PROGRESS", 5)),
                                                        _executions(("dev-1", "IN_PROGRESS", 5)),
                                                        _executions(("dev-1", "SUCCEEDED", 10))]
    assert _run(fake_api, ["--json", "jobs", "watch", "j-1", "--interval", "0"], output) == 0
    lines = [json.loads(x) for x in output.stream.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert [x["execution"]["state"] for x in lines] == ["IN_PROGRESS", "SUCCEEDED"]


def test_jobs_watch_gives_up_at_its_timeout(fake_api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    ticks = iter(range(1000))
    out = Output(stream=io.StringIO(), sleep=lambda _s: None, clock=lambda: float(next(ticks)))
    fake_api.routes[("GET", "/jobs/j-1")] = (200, JOB)
    fake_api.routes[("GET", "/jobs/j-1/executions")] = _executions(("dev-1", "IN_PROGRESS", 5))
    assert _run(fake_api, ["jobs", "watch", "j-1", "--interval", "0", "--timeout", "5"], out) == 1
    assert capsys.readouterr().err.startswith("error: job j-1 not finished after 5s (1 IN_PROGRESS)")


def test_unreachable_stack_api_suggests_checking_the_stack(tmp_path: Path, output: Output,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from local.procs import free_port

    (tmp_path / "stack.json").write_text(json.dumps({"api_url": f"http://127.0.0.1:{free_port()}", "token": "t"}))
    assert main(["--stack-dir", str(tmp_path), "keys", "list"], out=output, environ={}) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the API") and "ota-local status" in err


@pytest.mark.parametrize(("json_flag", "calls", "text"), [
    (False, ["/devices/dev-1", "/devices/dev-1/executions?limit=1000"], "j-9"),
    (True, ["/devices/dev-1"], '"model": "m1"'),
])
def test_devices_show_adds_executions_for_people_only(fake_api: FakeApi, output: Output, json_flag: bool,
                                                      calls: list[str], text: str) -> None:
    fake_api.routes[("GET", "/devices/dev-1")] = (200, DEVICE)
    fake_api.routes[("GET", "/devices/dev-1/executions")] = (200, {"executions": [
        {"epn": "dev-1", "job_id": "j-9", "state": "SUCCEEDED", "percent": 100}]})
    assert _run(fake_api, [*(["--json"] if json_flag else []), "devices", "show", "dev-1"], output) == 0
    assert [s.path for s in fake_api.seen] == calls
    assert text in output.stream.getvalue()  # type: ignore[attr-defined]


def test_the_stack_token_never_goes_to_another_api(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(json.dumps({"api_url": "http://stack", "token": "t-stack"}))
    target = resolve("https://abc123.execute-api.eu-west-1.amazonaws.com/api", None, tmp_path, environ={})
    assert target.token is None


@pytest.mark.parametrize(("fixture", "keys", "said"), [
    ("not-a-package.bin", ["publisher.pub"], "bad magic"),
    ("untrusted-key.otapkg", ["publisher.pub"], "untrusted-key"),
    ("bad-signature.otapkg", ["publisher.pub"], "bad-signature"),
    ("unsigned.otapkg", ["publisher.pub"], "unsigned"),
    ("truncated-payload.otapkg", ["publisher.pub"], "manifest makes it"),
    ("good-full-1.0.0.otapkg", [], "no publisher key is registered"),
])
def test_upload_refuses_locally_before_sending_a_byte(fake_api: FakeApi, tmp_path: Path, fixture: str,
                                                      keys: list[str], said: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake_api.routes[("GET", "/keys")] = (200, {"keys": [{"public_key": (FIXTURES / k).read_text()} for k in keys]})
    code = _run(fake_api, ["packages", "upload", str(FIXTURES / fixture)], Output(stream=io.StringIO()))
    assert code == 1 and said in capsys.readouterr().err
    assert [(s.method, s.path) for s in fake_api.seen] == [("GET", "/keys")]


def test_upload_of_bytes_already_in_the_repository_sends_nothing(fake_api: FakeApi, output: Output) -> None:
    package = FIXTURES / "good-full-1.0.0.otapkg"
    fake_api.routes[("GET", "/keys")] = (200, {"keys": [{"public_key": (FIXTURES / "publisher.pub").read_text()}]})
    existing = {"upload_id": "up-1", "state": "AVAILABLE", "manifest": {"app": "demo", "version": "1.0.0"}}
    fake_api.routes[("POST", "/packages")] = (200, {"upload_id": "up-1", "existing": existing})
    assert _run(fake_api, ["packages", "upload", str(package)], output) == 0
    assert [s.method for s in fake_api.seen] == ["GET", "POST"]  # no PUT, no polling
    assert "already in the repository: AVAILABLE: demo 1.0.0 as up-1" in output.stream.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("argv", "pages", "wanted"), [
    (["devices", "list"], 3, ["d-0", "d-1", "d-2"]),  # every page, following next_cursor
    (["devices", "list", "--limit", "2"], 2, ["d-0", "d-1"]),  # only what was asked for
])
def test_lists_follow_cursors(fake_api: FakeApi, output: Output, argv: list[str], pages: int,
                              wanted: list[str]) -> None:
    def page(request: Seen) -> Any:
        at = int(request.path.partition("cursor=c")[2] or 0)
        more = f"c{at + 1}" if at < 2 else None
        return 200, {"devices": [{**DEVICE, "epn": f"d-{at}"}], "next_cursor": more}

    fake_api.routes[("GET", "/devices?limit=1000")] = page
    for at in (1, 2):
        fake_api.routes[("GET", f"/devices?limit=1000&cursor=c{at}")] = page
        fake_api.routes[("GET", f"/devices?limit=1&cursor=c{at}")] = page
    fake_api.routes[("GET", "/devices?limit=2")] = page
    assert _run(fake_api, ["--json", *argv], output) == 0
    shown = json.loads(output.stream.getvalue())  # type: ignore[attr-defined]
    assert [d["epn"] for d in shown["devices"]] == wanted and len(fake_api.seen) == pages
