"""Scheduled sweeper (EventBridge every minute on AWS; the local bridge calls it more often)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from .. import bootstrap
from ..services.sweep import sweep as run_sweep
from . import attach_app_middleware

bp = Blueprint(__name__)


@bp.schedule(Rate(1, unit=Rate.MINUTES))
def sweep(event: Any) -> dict[str, Any]:
    c = bootstrap.get()
    result = run_sweep(c.repository, c.storage, c.publisher, c.clock(), queue=c.fanout, pacing=c.pacing)
    return {"timed_out": result.timed_out, "resent_blocks": result.resent_blocks,
            "completed_jobs": result.completed_jobs, "retried": result.retried, "aborted_jobs": result.aborted_jobs,
            "waves_started": result.waves_started}


attach_app_middleware()
