"""Routes /commands: submit a signed command, list, show one with its per-device runs, a device's commands."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from .. import bootstrap
from ..services import commands
from .auth import OPERATOR
from .errors import handled
from .http import body, epn_path, json_response

bp = Blueprint(__name__)


@bp.route("/commands", methods=["POST"], authorizer=OPERATOR)
@handled
def submit_command() -> Any:
    """Submit a signed command; it is sent to every target device (201 with one run per device)."""
    c = bootstrap.get()
    command, runs = commands.submit(c.repository, c.publisher, c.clock(), body(bp.current_request))
    return json_response(commands.command_view(command, runs), 201)


@bp.route("/commands", methods=["GET"], authorizer=OPERATOR)
@handled
def list_commands() -> Any:
    """List commands (newest first) with counts per state."""
    c = bootstrap.get()
    found = sorted(c.repository.list_commands(), key=lambda m: (m.created_at, m.command_id), reverse=True)
    return json_response({"commands": [commands.command_view(m, c.repository.list_command_runs(m.command_id),
                                                             with_runs=False) for m in found]})


@bp.route("/commands/{command_id}", methods=["GET"], authorizer=OPERATOR)
@handled
def show_command(command_id: str) -> Any:
    """Show a command and every device's run: state, exit code, reason, bounded output."""
    c = bootstrap.get()
    command = commands.get_command(c.repository, command_id)
    return json_response(commands.command_view(command, c.repository.list_command_runs(command_id)))


@bp.route("/devices/{epn}/commands", methods=["GET"], authorizer=OPERATOR)
@handled
def device_commands(epn: str) -> Any:
    """A device's command runs, oldest first."""
    c = bootstrap.get()
    runs = c.repository.list_device_command_runs(epn_path(epn))
    return json_response({"runs": [commands.run_view(r) for r in runs]})
