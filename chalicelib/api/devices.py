"""Routes /devices...: pre-authorise, register (device token, no operator auth), list, show, deregister."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from otaformat.ids import check_model

from .. import bootstrap
from ..domain.errors import InvalidInput
from ..services import devices, fanout, jobs
from ..services.common import checked, iso
from .auth import OPERATOR
from .errors import handled
from .http import body, epn_path, json_response, only, paging, query

bp = Blueprint(__name__)


@bp.route("/devices", methods=["POST"], authorizer=OPERATOR)
@handled
def preauthorize() -> Any:
    """Pre-authorise a device (EPN ID + model); returns its one-time registration token."""
    c = bootstrap.get()
    data = body(bp.current_request)
    only(data, {"epn", "model", "token_ttl_seconds"})
    ttl = data.get("token_ttl_seconds", devices.TOKEN_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= 30 * 86400:
        raise InvalidInput("field 'token_ttl_seconds' must be an integer in 60..2592000", field="token_ttl_seconds")
    made = devices.preauthorize(c.repository, c.clock(), data.get("epn"), data.get("model"), ttl)
    view = devices.device_view(made.device)
    return json_response({"epn": view["epn"], "model": view["model"], "state": view["state"],
                          "registration_token": made.token,
                          "token_expires": iso(made.device.token_expires)}, 201)


@bp.route("/devices", methods=["GET"], authorizer=OPERATOR)
@handled
def list_devices() -> Any:
    """List devices (a page: limit, cursor), optionally of one model."""
    c = bootstrap.get()
    params = query(bp.current_request)
    only(params, {"model", "limit", "cursor"}, "query parameter")
    model = params.get("model")
    if model is not None:
        checked("model", check_model, model)
    page = c.repository.devices_page(model, *paging(params))
    return json_response({"devices": [devices.device_view(d) for d in page.items], "next_cursor": page.next_cursor})


@bp.route("/devices/{epn}", methods=["GET"], authorizer=OPERATOR)
@handled
def show_device(epn: str) -> Any:
    """Show one device."""
    c = bootstrap.get()
    return json_response(devices.device_view(devices.get_device(c.repository, epn_path(epn))))


@bp.route("/devices/{epn}", methods=["DELETE"], authorizer=OPERATOR)
@handled
def deregister(epn: str) -> Any:
    """Deregister a device and revoke its certificate."""
    c = bootstrap.get()
    device = devices.deregister(c.repository, c.signer, c.registry, c.publisher, c.clock(), epn_path(epn))
    return json_response({"epn": device.epn, "state": device.state})


@bp.route("/devices/{epn}/register", methods=["POST"])
@handled
def register(epn: str) -> Any:
    """Register a device with its token and CSR; returns certificate, CA, MQTT endpoint, topics."""
    c = bootstrap.get()
    data = body(bp.current_request)
    mqtt = (c.settings.mqtt_host, c.settings.mqtt_port)
    answer = devices.register(c.repository, c.signer, c.registry, mqtt, c.clock(), epn_path(epn), data)
    fanout.on_registered(c.repository, c.storage, c.publisher, c.clock(), epn)  # continuous group jobs
    return json_response(answer)


@bp.route("/devices/{epn}/executions", methods=["GET"], authorizer=OPERATOR)
@handled
def device_executions(epn: str) -> Any:
    """List a device's executions (a page: limit, cursor; oldest first)."""
    c = bootstrap.get()
    params = query(bp.current_request)
    only(params, {"limit", "cursor"}, "query parameter")
    devices.get_device(c.repository, epn_path(epn))
    views = []
    cache: dict[str, Any] = {}
    page = c.repository.device_executions_page(epn, *paging(params))
    for execution in page.items:
        job = cache.get(execution.job_id) or c.repository.get_job(execution.job_id)
        if job is None:
            continue
        cache[job.job_id] = job
        views.append(jobs.execution_view(job, execution))
    return json_response({"executions": views, "next_cursor": page.next_cursor})
