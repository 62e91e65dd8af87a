"""Releases and automatic updates: an operator publishes (app, version, model, channel); devices of that
model following that channel that install the app automatically get it as an ordinary one-device job.

What "newer" means is the operator's decision: a release is published explicitly, never implied by an
upload. The device tells the cloud its channel and its automatic apps in its inventory (sent on connect,
after every install, and on its own jittered check interval: one small message per check). On a publish
the cloud offers the release to every such device it knows of; on each inventory it offers the newest
release of each automatic app that is newer than what the device has. An offer is a job created with
the Idempotency-Key `auto.<epn>.<app>.<version>` (so each device gets at most one execution per release,
never retried behind the operator's back), preferring an AVAILABLE delta from the device's installed
version, else the full package; it then travels, verifies and installs exactly like any job, and the
operator sees it as a job with one execution. Does not: decide pins or opt-outs (the device does, by
leaving the app out of its automatic list).
"""

from __future__ import annotations

import logging
from typing import Any

from otaformat.ids import check_app, check_model
from otaformat.messages import CHANNEL
from otaformat.versions import Version

from ..domain.errors import Conflict, DomainError, InvalidInput, NotFound
from ..domain.models import Device, Package, Release
from ..domain.ports import Publisher, Repository, Storage
from . import jobs
from .common import checked, iso

log = logging.getLogger(__name__)


def _normalise(body: Any) -> dict[str, str]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - {"app", "version", "model", "channel"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    app = checked("app", check_app, body.get("app"))
    version = checked("version", Version.parse, body.get("version"))
    model = checked("model", check_model, body.get("model"))
    channel = body.get("channel", "stable")
    if not isinstance(channel, str) or not CHANNEL.fullmatch(channel):
        raise InvalidInput(f"field 'channel' must match {CHANNEL.pattern}", field="channel")
    return {"app": app, "version": f"{version.major}.{version.minor}.{version.patch}", "model": model,
            "channel": channel}


def _full_package(repo: Repository, app: str, version: str, model: str) -> Package:
    found = [p for p in repo.list_packages() if p.state == "AVAILABLE" and p.app == app
             and p.version_label == version and model in p.models and not p.is_delta]
    if not found:
        raise NotFound(f"no AVAILABLE full package of {app} {version} for model {model}", field="version")
    return max(found, key=lambda p: (p.created_at, p.upload_id))


def publish(repo: Repository, storage: Storage, publisher: Publisher, now: float, body: Any) -> tuple[Release, int]:
    """Publish a release; returns it and how many devices were offered it now."""
    fields = _normalise(body)
    package = _full_package(repo, fields["app"], fields["version"], fields["model"])
    release = Release(release_id=f"{fields['app']}@{fields['version']}:{fields['model']}:{fields['channel']}",
                      app=fields["app"], app_version=fields["version"], model=fields["model"],
                      channel=fields["channel"], upload_id=package.upload_id, created_at=now)
    try:
        repo.create_release(release)
    except Conflict as err:
        raise Conflict(f"release {release.release_id} is already published", field="version") from err
    offered = sum(offer(repo, storage, publisher, device, release, now) for device in repo.list_devices(release.model)
                  if device.state == "REGISTERED")
    publisher.flush()
    return release, offered


def newest(releases: list[Release], model: str, channel: str, app: str) -> Release | None:
    mine = [r for r in releases if r.model == model and r.channel == channel and r.app == app]
    return max(mine, key=lambda r: (Version.parse(r.app_version), r.created_at), default=None)


def on_inventory(repo: Repository, storage: Storage, publisher: Publisher, epn: str, now: float) -> int:
    """After a device's inventory was recorded: offer the newest release of each of its automatic apps."""
    device = repo.get_device(epn)
    if device is None or device.state != "REGISTERED" or device.channel is None or not device.auto_apps:
        return 0
    releases = repo.list_releases()
    count = 0
    for app in device.auto_apps:
        release = newest(releases, device.model, device.channel, app)
        if release is not None:
            count += offer(repo, storage, publisher, device, release, now)
    return count


def offer(repo: Repository, storage: Storage, publisher: Publisher, device: Device, release: Release,
          now: float) -> int:
    """Create (once) the one-device job installing `release` on `device` if it wants it; 1 if a job exists."""
    if device.channel != release.channel or release.app not in device.auto_apps or device.model != release.model:
        return 0
    installed = device.apps.get(release.app)
    if installed is not None and Version.parse(installed) >= Version.parse(release.app_version):
        return 0
    upload_id = _delta_from(repo, release, installed) or release.upload_id
    body = {"package_id": upload_id, "targets": {"devices": [device.epn]}}
    key = f"auto.{device.epn}.{release.app}.{release.app_version}"
    try:
        job, created = jobs.create_job(repo, storage, publisher, now, body, key)
    except DomainError as err:  # e.g. the package was retired since, or a delta body differs from the first offer
        log.info("release not offered", extra={"epn": device.epn, "release": release.release_id, "reason": err.message})
        return 0
    if created:
        log.info("release offered", extra={"epn": device.epn, "release": release.release_id, "job_id": job.job_id})
    return 1


def _delta_from(repo: Repository, release: Release, installed: str | None) -> str | None:
    if installed is None:
        return None
    deltas = [p for p in repo.list_packages() if p.state == "AVAILABLE" and p.is_delta and p.app == release.app
              and p.version_label == release.app_version and p.base_version == installed
              and release.model in p.models]
    return max(deltas, key=lambda p: (p.created_at, p.upload_id)).upload_id if deltas else None


def release_view(release: Release) -> dict[str, Any]:
    return {"release_id": release.release_id, "app": release.app, "version": release.app_version,
            "model": release.model, "channel": release.channel, "package_id": release.upload_id,
            "created_at": iso(release.created_at)}
