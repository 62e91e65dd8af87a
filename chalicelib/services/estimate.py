"""Estimate a rollout's AWS cost without creating it (`POST /jobs?dry_run=true`, `ota jobs create --estimate`).

The body is validated exactly as job creation validates it (services/jobs.py: the same normalisation,
the package must be AVAILABLE, the targets registered, of the package's models, no downgrades), then
the rollout is counted and priced by domain/pricing.py with one price table (chalicelib/prices). The
answer names the table, its date and sources, the counts, one line per metered item and the total,
and the same rollout with AWS IoT Jobs + MQTT streams for comparison. Does not: create, write or
publish anything, or read anything but the package and the target devices.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from otaformat import messages, wire

from .. import prices as price_tables
from ..domain import pricing
from ..domain.errors import Conflict, InvalidInput
from ..domain.models import Package
from ..domain.ports import Repository
from ..domain.window import MAX_TRANSFER_BLOCKS
from . import fanout
from .jobs import _available, _check_targets, _normalise

MAX_LOSS = 0.5
_EXAMPLE_IDS = "x" * 24  # job and execution ids as the service issues them ("job-" + 20 hex, "ex-" + 16 hex)


def dry_run(query: dict[str, str]) -> bool:
    """True if the query asks for an estimate (`dry_run=true`); 400 for any other value than true/false."""
    value = query.get("dry_run")
    if value is None or value == "false":
        return False
    if value != "true":
        raise InvalidInput("query parameter 'dry_run' must be 'true' or 'false'", field="dry_run")
    return True


def _loss(query: dict[str, str]) -> float:
    text = query.get("loss", "0")
    try:
        loss = float(text)
    except ValueError:
        loss = math.nan
    if not 0.0 <= loss <= MAX_LOSS:  # NaN fails too
        raise InvalidInput(f"query parameter 'loss' must be a number in 0..{MAX_LOSS} (share of blocks lost)",
                           field="loss")
    return loss


def _eligible(repo: Repository, normal: dict[str, Any], package: Package) -> list[str]:
    """The EPNs that would take the package (SKIPPED ones cost nothing), refused as job creation refuses."""
    spec = normal["targets"]
    _check_targets(repo, spec, package, normal["all_or_nothing"], normal["continuous"])
    if "devices" in spec:
        devices = [d for d in repo.get_devices(spec["devices"]) if d is not None]
    else:
        devices, cursor = [], None
        while True:
            page = repo.devices_page(spec["model"], 1000, cursor)
            devices.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    epns = sorted(d.epn for d in devices if fanout.ineligible(d, package) is None)
    if not epns:
        raise Conflict("field 'targets': no target could take this package now (each would be SKIPPED)",
                       field="targets")
    return epns


def estimate_job(repo: Repository, body: Any, query: dict[str, str]) -> dict[str, Any]:
    """The estimate of the job `body` would create (validated as POST /jobs validates it)."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    normal = _normalise(body)
    loss = _loss(query)
    table_name = query.get("prices", price_tables.DEFAULT)
    table = price_tables.raw(table_name)
    package = _available(repo, normal["package_id"])
    epns = _eligible(repo, normal, package)
    size = package.size or 0
    block_count = wire.block_count(size, normal["block_size"])
    if normal["mode"] == "block" and block_count > MAX_TRANSFER_BLOCKS:
        raise InvalidInput(f"field 'block_size': {block_count} blocks is more than {MAX_TRANSFER_BLOCKS}",
                           field="block_size")
    document = messages.encode(messages.JobDocument(
        job_id=_EXAMPLE_IDS, execution_id=_EXAMPLE_IDS, epn=epns[0], stream=0, mode=normal["mode"],
        envelope=package.envelope or {}, package_size=size, package_sha256=package.sha256 or "0" * 64,
        block_size=normal["block_size"], block_count=block_count, window=normal["window"],
        url="https://" + "u" * 600 if normal["mode"] == "url" else None,  # a presigned URL is ~600 bytes
        url_expires="2026-01-01T00:00:00Z" if normal["mode"] == "url" else None,
        stall_timeout=normal["timeouts"]["stall_seconds"]))
    spec = pricing.RolloutSpec(package_size=size, block_size=normal["block_size"], window=normal["window"],
                               targets=len(epns), mode=normal["mode"], loss=loss,
                               epn_length=math.ceil(sum(map(len, epns)) / len(epns)),
                               job_document_bytes=len(document))
    prices = price_tables.load(table_name)
    ours = pricing.estimate(spec, prices)
    streams = pricing.iot_jobs_streams(spec, prices)
    return view(ours, streams, table)


def _lines(estimate: pricing.Estimate) -> list[dict[str, Any]]:
    return [asdict(line) for line in estimate.lines]


def view(ours: pricing.Estimate, streams: pricing.Estimate, table: dict[str, Any]) -> dict[str, Any]:
    spec = ours.spec
    return {
        "dry_run": True,
        "created": False,
        "rollout": asdict(spec),
        "prices": {"table": table["name"], "region": table["region"], "date": table["date"],
                   "currency": table["currency"], "sources": table["sources"], "checked": table["checked"]},
        "assumptions": asdict(pricing.Assumptions()),
        "counts": pricing.counts_dict(ours.counts),
        "lines": _lines(ours),
        "total": ours.total,
        "per_device": ours.total / spec.targets if spec.targets else 0.0,
        "comparison": {"name": "AWS IoT Jobs + MQTT-based file delivery (4 KB blocks)",
                       "lines": _lines(streams), "total": streams.total},
    }
