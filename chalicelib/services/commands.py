"""Remote-command use cases: submit a signed command, record device results, resend to devices that
come back, time runs out, and the views.

The operator signs the command on their own machine; `submit` checks the signature against the
registered publisher keys (so the cloud never forwards what no device would accept), that it has not
expired, that its id is new (a replayed submission is 409) and that every target is a registered device,
then stores one run per device and publishes the envelope unchanged on `ota/{epn}/cmd`. Results come
from `ota/{epn}/cmd/result` (device_messages routes them here): the EPN of the topic selects the run,
so a device can only ever report on its own runs; every write is conditional. Does not: decide
anything a device decides (allow-list, replay), nor hold a private key.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from otaformat import commands as oc
from otaformat import topics
from otaformat.errors import FormatError, MalformedError, VerificationError
from otaformat.manifest import parse_timestamp
from otaformat.signing import load_public_key

from ..domain import commands as dc
from ..domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from ..domain.models import CommandRun, RemoteCommand, TimelineEntry, bumped
from ..domain.ports import Publisher, Repository
from .common import iso, retrying

log = logging.getLogger(__name__)
MAX_DEVICE_TARGETS = 1000
# runs per page of GET /commands/{id}/runs and /devices/{epn}/commands, whatever `limit` asks: a run view
# may carry 8 KiB of output plus reasons (JSON-escaped, about 100 KB in the worst case), and a page stays
# under Lambda's 6 MB response (tests/functional/test_commands.py checks the worst case)
RUNS_PER_PAGE = 32


def _trusted(repo: Repository) -> dict[str, Any]:
    trusted = {}
    for key in repo.list_keys():
        try:
            trusted[key.key_id] = load_public_key(key.public_key_pem)
        except MalformedError:
            continue
    return trusted


def submit(repo: Repository, publisher: Publisher, now: float, body: Any) -> tuple[RemoteCommand, list[CommandRun]]:
    if not isinstance(body, dict) or set(body) != {"envelope"}:
        raise InvalidInput("the body must be {\"envelope\": <signed command envelope>}", field="envelope")
    envelope = body["envelope"]
    trusted = _trusted(repo)
    try:
        command = oc.verify_signature(envelope, trusted)
    except VerificationError as err:  # the signature is the command's credential: 403 unless malformed
        error = InvalidInput if err.code == "malformed" else Forbidden
        raise error(f"field 'envelope': {err.code}: {err.reason}", field="envelope") from err
    expires = parse_timestamp(command.expires).timestamp()
    if expires <= now:
        raise Conflict(f"field 'envelope': expired: the command expired at {command.expires}", field="envelope")
    key_id = next(str(s["keyid"]) for s in envelope["signatures"] if isinstance(s, dict) and s.get("keyid") in trusted)
    epns = _targets(repo, command)
    try:
        oc.encode_command_message(envelope)
    except FormatError as err:
        raise InvalidInput(f"field 'envelope': {err.reason}", field="envelope") from err
    spec: dict[str, Any] = {"model": command.model} if command.model else {"devices": list(command.devices)}
    record = RemoteCommand(command_id=command.command_id, type=command.type, envelope=envelope, key_id=key_id,
                           targets=tuple(epns), target_spec=spec, created_at=now, expires_at=expires,
                           timeout=command.timeout)
    runs = [CommandRun(command_id=command.command_id, epn=epn, state=dc.QUEUED, created_at=now, last_activity=now,
                       expires_at=expires, timeout=command.timeout,
                       timeline=(TimelineEntry(at=now, state=dc.QUEUED),)) for epn in epns]
    try:
        repo.create_command(record, runs)
    except Conflict as err:
        raise Conflict(f"command {command.command_id} was already submitted (ids are single-use)",
                       field="envelope") from err
    message = oc.encode_command_message(envelope)
    for epn in epns:
        publisher.publish(topics.topic(epn, "cmd"), message)
    publisher.flush()
    return record, runs


def _targets(repo: Repository, command: oc.Command) -> list[str]:
    if command.model is None:
        devices = [(epn, repo.get_device(epn)) for epn in command.devices]
        unknown = [epn for epn, d in devices if d is None]
        if unknown:
            raise NotFound(f"field 'envelope': unknown device(s) {', '.join(unknown[:10])}", field="envelope")
        unregistered = [epn for epn, d in devices if d is not None and d.state != "REGISTERED"]
        if unregistered:
            raise Conflict(f"field 'envelope': device(s) not registered {', '.join(unregistered[:10])}",
                           field="envelope")
        return sorted(epn for epn, _ in devices)
    epns = sorted(d.epn for d in repo.list_devices(command.model) if d.state == "REGISTERED")
    if not epns:
        raise Conflict(f"field 'envelope': no registered device of model {command.model!r}", field="envelope")
    if len(epns) > MAX_DEVICE_TARGETS:
        raise Conflict(f"model {command.model} has {len(epns)} devices; at most {MAX_DEVICE_TARGETS} per command",
                       field="envelope")
    return epns


# -- device results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultsOutcome:
    applied: int = 0
    ignored: int = 0
    malformed: int = 0


def record_results(repo: Repository, results: Iterable[tuple[str, bytes, float]]) -> ResultsOutcome:
    """Apply (epn of the topic, payload, received_at) cmd/result messages. Malformed ones are dropped and
    counted; results for runs that do not exist for that EPN, stale or after a terminal state are ignored.
    Infrastructure errors propagate (the caller redelivers)."""
    applied = ignored = malformed = 0
    for epn, payload, now in results:
        try:
            result = oc.decode_result(payload)
        except (FormatError, ValueError, TypeError, RecursionError) as err:
            log.warning("malformed command result dropped", extra={"epn": epn, "reason": str(err)[:200]})
            malformed += 1
            continue
        if retrying(partial(_apply, repo, epn, result, now)):
            applied += 1
        else:
            ignored += 1
    return ResultsOutcome(applied, ignored, malformed)


def _apply(repo: Repository, epn: str, result: oc.CommandResult, now: float) -> bool:
    run = repo.get_command_run(result.command_id, epn)
    if run is None:
        log.warning("result for an unknown command run ignored", extra={"epn": epn, "command_id": result.command_id})
        return False
    moved = dc.apply_result(run, result.state, result.seq, now, exit_code=result.exit_code, reason=result.reason,
                            output=result.output, truncated=result.truncated)
    if moved is None:
        log.info("stale, duplicate or late command result ignored",
                 extra={"epn": epn, "command_id": result.command_id, "state": result.state, "current": run.state})
        return False
    repo.save_command_run(bumped(moved))
    return True


def republish_pending(repo: Repository, publisher: Publisher, epn: str, now: float) -> int:
    """Send again every command this device has not started and that has not expired (on its inventory)."""
    count = 0
    for run in repo.list_device_command_runs(epn):
        if run.state not in dc.RESEND or run.expires_at <= now:
            continue
        command = repo.get_command(run.command_id)
        if command is not None:
            publisher.publish(topics.topic(epn, "cmd"), oc.encode_command_message(command.envelope))
            count += 1
    return count


def sweep_commands(repo: Repository, now: float) -> int:
    """Time out runs that expired unstarted or ran past their deadline; returns how many."""
    count = 0
    for run in repo.list_active_command_runs():
        if dc.overdue_reason(run, now) is not None and retrying(partial(_time_out, repo, run.command_id, run.epn, now)):
            count += 1
    return count


def _time_out(repo: Repository, command_id: str, epn: str, now: float) -> bool:
    run = repo.get_command_run(command_id, epn)
    moved = dc.time_out(run, now) if run is not None else None
    if moved is None:
        return False
    repo.save_command_run(bumped(moved))
    log.info("command run timed out", extra={"command_id": command_id, "epn": epn, "reason": moved.reason})
    return True


# -- views --------------------------------------------------------------------------------------------


def get_command(repo: Repository, command_id: str) -> RemoteCommand:
    command = repo.get_command(command_id) if oc._COMMAND_ID.fullmatch(command_id) else None
    if command is None:
        raise NotFound(f"command {command_id!r} does not exist", field="command_id")
    return command


def run_view(run: CommandRun) -> dict[str, Any]:
    return {"command_id": run.command_id, "epn": run.epn, "state": run.state, "exit_code": run.exit_code,
            "reason": run.reason, "output": run.output, "truncated": run.truncated,
            "created_at": iso(run.created_at), "started_at": iso(run.started_at),
            "updated_at": iso(run.last_activity),
            "timeline": [{"at": iso(t.at), "state": t.state, "reason": t.reason} for t in run.timeline]}


def command_counts(repo: Repository, command: RemoteCommand) -> dict[str, int]:
    """The command's runs per state, from its counters (one read); a command stored before the counters
    existed is counted from its runs (at most MAX_DEVICE_TARGETS)."""
    counts = repo.command_counts(command.command_id)
    if not counts and command.targets:
        counts = dict(Counter(r.state for r in repo.list_command_runs(command.command_id)))
    return counts


def command_view(command: RemoteCommand, counts: Mapping[str, int], *, with_envelope: bool = True) -> dict[str, Any]:
    """A command with its runs counted per state; never the runs themselves (GET /commands/{id}/runs pages
    them: a command to 1,000 devices stays one small answer)."""
    shown = {state: int(counts.get(state, 0)) for state in dc.STATES}
    body = command.envelope.get("command", {})
    view: dict[str, Any] = {
        "command_id": command.command_id, "type": command.type, "targets": command.target_spec,
        "devices": len(command.targets), "key_id": command.key_id, "created_at": iso(command.created_at),
        "expires_at": iso(command.expires_at), "timeout": command.timeout, "args": body.get("args", {}),
        "counts": shown, "finished": not any(shown[state] for state in dc.ACTIVE),
    }
    if with_envelope:
        view["envelope"] = command.envelope  # signed, so safe to show: what every device received, verbatim
    return view
