"""Routes /releases: publish a release (app, version, model, channel) and list them (a page: limit, cursor)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from .. import bootstrap
from ..services import releases
from .auth import OPERATOR
from .errors import handled
from .http import body, json_response, only, paging, query

bp = Blueprint(__name__)


@bp.route("/releases", methods=["POST"], authorizer=OPERATOR)
@handled
def publish_release() -> Any:
    """Publish a release: devices of the model on the channel that update the app automatically get it."""
    c = bootstrap.get()
    release, offered = releases.publish(c.repository, c.storage, c.publisher, c.clock(), body(bp.current_request))
    return json_response({**releases.release_view(release), "offered": offered}, 201)


@bp.route("/releases", methods=["GET"], authorizer=OPERATOR)
@handled
def list_releases() -> Any:
    """List releases (a page: limit, cursor; oldest first)."""
    c = bootstrap.get()
    params = query(bp.current_request)
    only(params, {"limit", "cursor"}, "query parameter")
    page = c.repository.releases_page(*paging(params))
    return json_response({"releases": [releases.release_view(r) for r in page.items], "next_cursor": page.next_cursor})
