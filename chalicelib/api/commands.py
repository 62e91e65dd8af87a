"""Routes /commands: submit a signed command, list, show one (counts per state), its per-device runs, a
device's command runs. Every list is a page (limit, cursor; api/http.paging); a page of runs holds at most
services.commands.RUNS_PER_PAGE runs whatever the limit (each may carry 8 KiB of output)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chalice import Blueprint

from .. import bootstrap
from ..services import commands
from .auth import OPERATOR
from .errors import handled
from .http import body, epn_path, json_response, only, paging, query

bp = Blueprint(__name__)


@bp.route("/commands", methods=["POST"], authorizer=OPERATOR)
@handled
def submit_command() -> Any:
    """Submit a signed command; it is sent to every target device (201 with its runs counted per state)."""
    c = bootstrap.get()
    command, runs = commands.submit(c.repository, c.publisher, c.clock(), body(bp.current_request))
    return json_response(commands.command_view(command, Counter(r.state for r in runs)), 201)


@bp.route("/commands", methods=["GET"], authorizer=OPERATOR)
@handled
def list_commands() -> Any:
    """List commands with counts per state (a page: limit, cursor; oldest first)."""
    c = bootstrap.get()
    params = query(bp.current_request)
    only(params, {"limit", "cursor"}, "query parameter")
    page = c.repository.commands_page(*paging(params))
    return json_response({"commands": [commands.command_view(m, commands.command_counts(c.repository, m),
                                                             with_envelope=False) for m in page.items],
                          "next_cursor": page.next_cursor})


@bp.route("/commands/{command_id}", methods=["GET"], authorizer=OPERATOR)
@handled
def show_command(command_id: str) -> Any:
    """Show a command: its signed envelope and its runs counted per state."""
    c = bootstrap.get()
    command = commands.get_command(c.repository, command_id)
    return json_response(commands.command_view(command, commands.command_counts(c.repository, command)))


@bp.route("/commands/{command_id}/runs", methods=["GET"], authorizer=OPERATOR)
@handled
def command_runs(command_id: str) -> Any:
    """List a command's per-device runs: state, exit code, reason, bounded output (a page: limit, cursor; by EPN)."""
    c = bootstrap.get()
    params = query(bp.current_request)
    only(params, {"limit", "cursor"}, "query parameter")
    commands.get_command(c.repository, command_id)
    limit, cursor = paging(params)
    page = c.repository.command_runs_page(command_id, min(limit, commands.RUNS_PER_PAGE), cursor)
    return json_response({"runs": [commands.run_view(r) for r in page.items], "next_cursor": page.next_cursor})


@bp.route("/devices/{epn}/commands", methods=["GET"], authorizer=OPERATOR)
@handled
def device_commands(epn: str) -> Any:
    """A device's command runs (a page: limit, cursor; oldest first)."""
    c = bootstrap.get()
    params = query(bp.current_request)
    only(params, {"limit", "cursor"}, "query parameter")
    limit, cursor = paging(params)
    page = c.repository.device_command_runs_page(epn_path(epn), min(limit, commands.RUNS_PER_PAGE), cursor)
    return json_response({"runs": [commands.run_view(r) for r in page.items], "next_cursor": page.next_cursor})
