"""Command routes and results: submission checks, fan-out to a model, results through the device-message
trigger (own runs only, sticky terminal states), resend on inventory, sweeper time-outs."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.domain import commands as dc
from chalicelib.domain.models import CommandRun, RemoteCommand, TimelineEntry
from chalicelib.services import commands as scmd
from chalicelib.triggers.device_messages import on_device_message
from chalicelib.triggers.schedules import sweep
from otaformat import commands as oc
from otaformat import messages

from .fakes import NOW, device_event, scheduled_event
from .flows import register_device, trust


@pytest.fixture
def key(api):
    key = ec.generate_private_key(ec.SECP256R1())
    trust(api, key)
    return key


def signed(key, *, kind="run-script", devices=("dev-1",), model=None, lifetime=3600, issued_ago=60, cid=None,
           script="uptime"):
    start = dt.datetime.fromtimestamp(NOW - issued_ago, dt.UTC)
    command = oc.Command(command_id=cid or "cmd-" + secrets.token_hex(8), type=kind, issued=oc.iso(start),
                         expires=oc.iso(start + dt.timedelta(seconds=lifetime)), devices=() if model else devices,
                         model=model, script=script if kind == "run-script" else None, timeout=30)
    return oc.sign_command(command, key)


def result(cid, state, seq, **fields):
    return oc.encode_result(oc.CommandResult(cid, state, seq, fields.get("exit_code"), fields.get("reason"),
                                             fields.get("output"), fields.get("truncated", False)))


def deliver(*items):
    return on_device_message(device_event(items), None)


def runs_of(api, cid):
    """Every run of the command, following next_cursor (GET /commands/{id}/runs)."""
    runs, query = [], ""
    while True:
        page = api.call("GET", f"/commands/{cid}/runs{query}")
        assert page.status_code == 200, page.json
        runs.extend(page.json["runs"])
        if page.json["next_cursor"] is None:
            return runs
        query = f"?cursor={page.json['next_cursor']}"


def test_a_model_command_reaches_every_registered_device_and_collects_results(api, world, key):
    for epn, model in (("dev-1", "model-a"), ("dev-2", "model-a"), ("dev-3", "model-b")):
        register_device(api, epn, model=model)
    envelope = signed(key, model="model-a")
    answer = api.call("POST", "/commands", {"envelope": envelope})
    assert answer.status_code == 201, answer.json
    cid = answer.json["command_id"]
    assert answer.json["devices"] == 2 and answer.json["counts"]["QUEUED"] == 2 and "runs" not in answer.json
    assert [r["epn"] for r in runs_of(api, cid)] == ["dev-1", "dev-2"]
    for epn in ("dev-1", "dev-2"):
        [payload] = world.publisher.on(epn, "cmd")
        assert oc.decode_command_message(payload) == envelope  # forwarded unchanged, never re-signed
    assert world.publisher.on("dev-3", "cmd") == []
    deliver(("dev-1", "cmd/result", result(cid, "RUNNING", 1)),
            ("dev-1", "cmd/result", result(cid, "SUCCEEDED", 2, exit_code=0, output="up 3 days\n")),
            ("dev-2", "cmd/result", result(cid, "REJECTED", 1, reason="not-allowed: run-script")),
            ("dev-2", "cmd/result", result(cid, "SUCCEEDED", 2, exit_code=0)))  # after a terminal: ignored
    shown = api.call("GET", f"/commands/{cid}").json
    assert "runs" not in shown and shown["envelope"] == envelope
    runs = {r["epn"]: r for r in runs_of(api, cid)}
    assert runs["dev-1"]["state"] == "SUCCEEDED" and runs["dev-1"]["output"] == "up 3 days\n"
    assert runs["dev-1"]["exit_code"] == 0 and [t["state"] for t in runs["dev-1"]["timeline"]] == [
        "QUEUED", "RUNNING", "SUCCEEDED"]
    assert runs["dev-2"]["state"] == "REJECTED" and "not-allowed" in runs["dev-2"]["reason"]
    assert shown["finished"] and shown["counts"]["SUCCEEDED"] == 1 and shown["counts"]["REJECTED"] == 1
    assert sum(shown["counts"].values()) == 2
    listed = api.call("GET", "/commands").json["commands"]
    assert [c["command_id"] for c in listed] == [cid] and "runs" not in listed[0]
    assert [r["command_id"] for r in api.call("GET", "/devices/dev-1/commands").json["runs"]] == [cid]


def test_a_device_can_only_report_on_its_own_run(api, world, key):
    register_device(api, "dev-1")
    register_device(api, "dev-2")
    cid = api.call("POST", "/commands", {"envelope": signed(key)}).json["command_id"]
    out = deliver(("dev-2", "cmd/result", result(cid, "SUCCEEDED", 5, exit_code=0)),
                  ("dev-1", "cmd/result", b"{not json"))
    assert out["ignored"] == 1 and out["malformed"] == 1 and out["batchItemFailures"] == []
    assert runs_of(api, cid)[0]["state"] == "QUEUED"


@pytest.mark.parametrize(("name", "make", "status", "code"), [
    ("unsigned", lambda k: {**signed(k), "signatures": []}, 403, "unsigned"),
    ("untrusted key", lambda k: signed(ec.generate_private_key(ec.SECP256R1())), 403, "untrusted-key"),
    ("tampered", lambda k: {**(e := signed(k)), "command": {**e["command"], "script": "rm -rf /"}}, 403,
     "bad-signature"),
    ("expired", lambda k: signed(k, lifetime=30, issued_ago=60), 409, "expired"),
    ("unknown device", lambda k: signed(k, devices=("dev-9",)), 404, "unknown device"),
    ("no body envelope", lambda k: None, 400, "envelope"),
])
def test_submissions_are_refused(api, world, key, name, make, status, code):
    register_device(api, "dev-1")
    envelope = make(key)
    answer = api.call("POST", "/commands", {"envelope": envelope} if envelope else {"other": 1})
    assert answer.status_code == status and code in answer.json["message"], answer.json
    assert world.publisher.on("dev-1", "cmd") == []


def test_a_command_id_is_single_use(api, world, key):
    register_device(api, "dev-1")
    envelope = signed(key)
    assert api.call("POST", "/commands", {"envelope": envelope}).status_code == 201
    again = api.call("POST", "/commands", {"envelope": envelope})
    assert again.status_code == 409 and "already submitted" in again.json["message"]
    assert len(world.publisher.on("dev-1", "cmd")) == 1


def test_an_offline_device_gets_its_command_on_inventory_unless_expired(api, world, key):
    register_device(api, "dev-1")
    cid = api.call("POST", "/commands", {"envelope": signed(key, lifetime=600)}).json["command_id"]
    world.publisher.clear()
    inventory = messages.encode(messages.Inventory("1.0.0", "model-a", {}))
    deliver(("dev-1", "status", inventory))
    assert len(world.publisher.on("dev-1", "cmd")) == 1
    deliver(("dev-1", "cmd/result", result(cid, "DELIVERED", 1, reason="waiting: the agent is DOWNLOADING")))
    world.publisher.clear()
    deliver(("dev-1", "status", inventory))
    assert len(world.publisher.on("dev-1", "cmd")) == 1  # still not started: sent again
    world.clock.advance(600)
    world.publisher.clear()
    assert sweep(scheduled_event(), None)["timed_out"] == 0
    run = runs_of(api, cid)[0]
    assert run["state"] == "TIMED_OUT" and "expired before the device ran it" in run["reason"]
    deliver(("dev-1", "status", inventory))
    assert world.publisher.on("dev-1", "cmd") == []


def test_a_running_command_that_never_reports_times_out(api, world, key):
    register_device(api, "dev-1")
    cid = api.call("POST", "/commands", {"envelope": signed(key, kind="reboot")}).json["command_id"]
    deliver(("dev-1", "cmd/result", result(cid, "RUNNING", 1)))
    world.clock.advance(30 + 299)
    sweep(scheduled_event(), None)
    assert runs_of(api, cid)[0]["state"] == "RUNNING"
    world.clock.advance(2)
    sweep(scheduled_event(), None)
    run = runs_of(api, cid)[0]
    assert run["state"] == "TIMED_OUT" and "timeout of 30 s" in run["reason"]
    deliver(("dev-1", "cmd/result", result(cid, "SUCCEEDED", 2)))  # too late: terminal states are sticky
    assert runs_of(api, cid)[0]["state"] == "TIMED_OUT"


def test_unknown_command_ids_are_404(api, world):
    assert api.call("GET", "/commands/cmd-0123456789abcdef").status_code == 404
    assert api.call("GET", "/commands/not-an-id").status_code == 404


def _stored_command(world, devices: int, created: float = NOW):
    """A command to `devices` devices written straight into the repository (no 40 registrations)."""
    epns = tuple(f"dev-{n:03d}" for n in range(devices))
    cid = "cmd-" + secrets.token_hex(8)
    command = RemoteCommand(command_id=cid, type="reboot", envelope={"command": {"args": {}}}, key_id="k",
                            targets=epns, target_spec={"devices": list(epns)}, created_at=created,
                            expires_at=created + 3600, timeout=30)
    runs = [CommandRun(command_id=cid, epn=e, state=dc.QUEUED, created_at=created, last_activity=created,
                       expires_at=created + 3600, timeout=30) for e in epns]
    world.container.repository.create_command(command, runs)
    return cid, epns


def test_a_commands_runs_page_at_most_runs_per_page_whatever_the_limit(api, world):
    cid, epns = _stored_command(world, scmd.RUNS_PER_PAGE + 8)
    first = api.call("GET", f"/commands/{cid}/runs?limit=1000")
    assert first.status_code == 200 and len(first.json["runs"]) == scmd.RUNS_PER_PAGE
    assert first.json["next_cursor"] is not None
    small = api.call("GET", f"/commands/{cid}/runs?limit=5").json
    assert [r["epn"] for r in small["runs"]] == list(epns[:5])
    assert [r["epn"] for r in runs_of(api, cid)] == list(epns)  # by EPN, each once
    shown = api.call("GET", f"/commands/{cid}").json
    assert shown["counts"]["QUEUED"] == len(epns) and not shown["finished"] and "runs" not in shown


def test_commands_and_a_devices_runs_page_oldest_first(api, world):
    made = [_stored_command(world, 3, NOW + n)[0] for n in range(5)]
    for path, key, ident in (("/commands", "commands", "command_id"), ("/devices/dev-001/commands", "runs",
                                                                       "command_id")):
        seen, cursor = [], None
        while True:
            page = api.call("GET", f"{path}?limit=2" + (f"&cursor={cursor}" if cursor else "")).json
            assert len(page[key]) <= 2
            seen.extend(x[ident] for x in page[key])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == made, path
    listed = api.call("GET", "/commands?limit=1").json["commands"][0]
    assert listed["counts"]["QUEUED"] == 3 and "envelope" not in listed


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("cursor=", "cursor"),
    ("cursor=bm90LWEtY3Vyc29y", "cursor"), ("cursor=%21%21", "cursor"), ("other=1", "other"),
])
def test_command_and_release_lists_refuse_bad_limits_and_cursors(api, world, query, field):
    cid, _ = _stored_command(world, 2)
    for path in ("/commands", f"/commands/{cid}/runs", "/devices/dev-000/commands", "/releases"):
        answer = api.call("GET", f"{path}?{query}")
        assert answer.status_code == 400 and answer.json["field"] == field, (path, answer.json)
    _stored_command(world, 2)
    foreign = api.call("GET", "/devices/dev-000/commands?limit=1").json["next_cursor"]
    for path in ("/commands", f"/commands/{cid}/runs", "/devices/dev-001/commands", "/releases"):
        answer = api.call("GET", f"{path}?cursor={foreign}")  # a cursor of another listing
        assert answer.status_code == 400 and answer.json["field"] == "cursor", (path, answer.json)
    assert api.call("GET", "/commands/cmd-0123456789abcdef/runs").status_code == 404


def test_a_page_of_worst_case_runs_fits_a_lambda_response():
    """The largest run view the state machine can make (every move carrying the longest reason, the longest
    output, all in characters JSON escapes the most) times RUNS_PER_PAGE stays under Lambda's 6 MB."""
    worst_reason = "\U0001f600" * oc.MAX_REASON  # 12 characters each once escaped
    worst_output = "\x01" * oc.MAX_OUTPUT  # 6 characters each once escaped
    current = CommandRun(command_id="cmd-" + "0" * 40, epn="e" * 64, state=dc.QUEUED, created_at=NOW,
                         last_activity=NOW, expires_at=NOW + 3600, timeout=30,
                         timeline=(TimelineEntry(at=NOW, state=dc.QUEUED),))
    for seq, state in enumerate((dc.DELIVERED, dc.RUNNING, dc.FAILED), 1):
        current = dc.apply_result(current, state, seq, NOW + seq, exit_code=-(2**31), reason=worst_reason,
                                  output=worst_output, truncated=True)
    assert current is not None and len(current.timeline) == 4
    size = len(json.dumps({"runs": [scmd.run_view(current)] * scmd.RUNS_PER_PAGE, "next_cursor": "c" * 2048}))
    assert size < 6 * 1024 * 1024, size
