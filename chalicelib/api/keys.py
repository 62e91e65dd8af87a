"""Routes /keys: register, list and delete publisher public keys."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from .. import bootstrap
from ..services import keys
from .auth import OPERATOR
from .errors import handled
from .http import body, json_response, only

bp = Blueprint(__name__)


@bp.route("/keys", methods=["POST"], authorizer=OPERATOR)
@handled
def register_key() -> Any:
    """Register a publisher public key (key id = otaformat.signing.key_id)."""
    c = bootstrap.get()
    data = only(body(bp.current_request), {"public_key", "name"})
    key, created = keys.register_key(c.repository, c.clock(), data)
    return json_response({"key_id": key.key_id, "name": key.name}, 201 if created else 200)


@bp.route("/keys", methods=["GET"], authorizer=OPERATOR)
@handled
def list_keys() -> Any:
    """List publisher keys."""
    c = bootstrap.get()
    return json_response({"keys": [keys.key_view(k) for k in c.repository.list_keys()]})


@bp.route("/keys/{key_id}", methods=["DELETE"], authorizer=OPERATOR)
@handled
def delete_key(key_id: str) -> Any:
    """Delete a publisher key."""
    c = bootstrap.get()
    keys.delete_key(c.repository, key_id)
    return json_response({"key_id": key_id, "deleted": True})
