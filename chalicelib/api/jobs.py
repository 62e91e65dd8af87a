"""Routes /jobs: create (Idempotency-Key; `?dry_run=true` prices it and creates nothing), list, show with
progress, executions, cancel."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from .. import bootstrap
from ..domain.errors import NotFound
from ..services import estimate, fanout, jobs
from .auth import OPERATOR
from .errors import handled
from .http import body, epn_path, json_response, only, paging, query

bp = Blueprint(__name__)


@bp.route("/jobs", methods=["POST"], authorizer=OPERATOR)
@handled
def create_job() -> Any:
    """Create a job (Idempotency-Key header supported); with ?dry_run=true, only its cost estimate."""
    c = bootstrap.get()
    request = bp.current_request
    sent = body(request, max_bytes=jobs.MAX_BODY)
    if estimate.dry_run(query(request)):
        return json_response(estimate.estimate_job(c.repository, sent, query(request)))
    key = request.headers.get("idempotency-key")
    job, created = jobs.create_job(c.repository, c.storage, c.publisher, c.clock(), sent, key, c.fanout,
                                   pace_ms=c.pacing.pace_ms if c.pacing is not None else 0)
    return json_response(jobs.job_view(c.repository, job), 201 if created else 200)


@bp.route("/jobs", methods=["GET"], authorizer=OPERATOR)
@handled
def list_jobs() -> Any:
    """List jobs with their progress (a page: limit, cursor; oldest first)."""
    c = bootstrap.get()
    params = query(bp.current_request)
    only(params, {"limit", "cursor"}, "query parameter")
    page = c.repository.jobs_page(*paging(params))
    return json_response({"jobs": [jobs.job_view(c.repository, j) for j in page.items],
                          "next_cursor": page.next_cursor})


@bp.route("/jobs/{job_id}", methods=["GET"], authorizer=OPERATOR)
@handled
def show_job(job_id: str) -> Any:
    """Show a job: counts per state, bytes and percent done."""
    c = bootstrap.get()
    return json_response(jobs.job_view(c.repository, jobs.get_job(c.repository, job_id)))


@bp.route("/jobs/{job_id}/executions", methods=["GET"], authorizer=OPERATOR)
@handled
def job_executions(job_id: str) -> Any:
    """List a job's executions (a page: limit, cursor; by EPN)."""
    c = bootstrap.get()
    params = query(bp.current_request)
    only(params, {"limit", "cursor"}, "query parameter")
    job = jobs.get_job(c.repository, job_id)
    page = c.repository.job_executions_page(job_id, *paging(params))
    return json_response({"executions": [jobs.execution_view(job, e) for e in page.items],
                          "next_cursor": page.next_cursor})


@bp.route("/jobs/{job_id}/executions/{epn}", methods=["GET"], authorizer=OPERATOR)
@handled
def job_execution(job_id: str, epn: str) -> Any:
    """Show one execution: state, blocks, retransmissions, timeline."""
    c = bootstrap.get()
    job = jobs.get_job(c.repository, job_id)
    execution = c.repository.get_execution(fanout.execution_id(job_id, epn_path(epn)))
    if execution is not None and execution.job_id == job_id:
        return json_response(jobs.execution_view(job, execution))
    for execution in c.repository.list_job_executions(job_id) if job.targets else ():  # made before the fan-out
        if execution.epn == epn:
            return json_response(jobs.execution_view(job, execution))
    raise NotFound(f"job {job_id!r} has no execution for device {epn!r}", field="epn")


@bp.route("/jobs/{job_id}/cancel", methods=["POST"], authorizer=OPERATOR)
@handled
def cancel_job(job_id: str) -> Any:
    """Cancel a job: every unfinished execution becomes CANCELED and the devices are told."""
    c = bootstrap.get()
    job = jobs.cancel_job(c.repository, c.publisher, c.clock(), job_id)
    return json_response(jobs.job_view(c.repository, job))
