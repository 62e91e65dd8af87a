"""Routes /packages: upload slots, listing with filters, show, retire."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from .. import bootstrap
from ..services import packages
from .auth import OPERATOR
from .errors import handled
from .http import body, json_response, only, paging, query

bp = Blueprint(__name__)


@bp.route("/packages", methods=["POST"], authorizer=OPERATOR)
@handled
def create_upload() -> Any:
    """Open an upload slot (a presigned PUT into staging), or name the AVAILABLE package with this SHA-256."""
    c = bootstrap.get()
    data = body(bp.current_request)
    only(data, {"size", "sha256"})
    answer, created = packages.create_upload(c.repository, c.storage, c.clock(), data,
                                             c.settings.max_package_bytes)
    return json_response(answer, 201 if created else 200)


@bp.route("/packages", methods=["GET"], authorizer=OPERATOR)
@handled
def list_packages() -> Any:
    """List packages (a page: limit, cursor), filtered by app, model, version, state."""
    c = bootstrap.get()
    params = query(bp.current_request)
    page = packages.list_packages(c.repository, params, *paging(params))
    return json_response({"packages": [packages.package_view(p) for p in page.items], "next_cursor": page.next_cursor})


@bp.route("/packages/{upload_id}", methods=["GET"], authorizer=OPERATOR)
@handled
def show_package(upload_id: str) -> Any:
    """Show one package with its scan result."""
    c = bootstrap.get()
    return json_response(packages.package_view(packages.get_package(c.repository, upload_id)))


@bp.route("/packages/{upload_id}/retire", methods=["POST"], authorizer=OPERATOR)
@handled
def retire_package(upload_id: str) -> Any:
    """Retire an AVAILABLE package (no new jobs may use it)."""
    c = bootstrap.get()
    return json_response(packages.package_view(packages.retire(c.repository, upload_id)))
