"""Package use cases: upload slots (presigned PUT into staging), listing with filters, showing, retiring.

Does not: check package contents (services/scan.py does, when the staging notification arrives).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from otaformat.ids import check_app, check_model
from otaformat.versions import Version

from ..domain.errors import Conflict, InvalidInput, NotFound
from ..domain.models import PACKAGE_STATES, Package, bumped
from ..domain.ports import Page, Repository, Storage
from .common import checked, integer, iso, retrying

UPLOAD_URL_SECONDS = 900
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def create_upload(
    repo: Repository, storage: Storage, now: float, body: dict[str, Any], max_bytes: int
) -> tuple[dict[str, Any], bool]:
    """An upload slot (and True), or, when `sha256` names bytes already AVAILABLE, that package (and False)."""
    size = integer(body, "size", 1, max_bytes)
    sha256 = body.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256)):
        raise InvalidInput("field 'sha256' must be 64 lowercase hex characters", field="sha256")
    if sha256 is not None:
        same = [p for p in repo.packages_with_sha256(sha256) if p.state == "AVAILABLE" and p.size == size]
        if same:
            existing = min(same, key=lambda p: (p.created_at, p.upload_id))
            return {"upload_id": existing.upload_id, "existing": package_view(existing)}, False
    upload_id = "up-" + secrets.token_hex(10)
    repo.create_package(Package(upload_id=upload_id, state="PENDING", declared_size=size, created_at=now,
                                declared_sha256=sha256))
    return {
        "upload_id": upload_id,
        "url": storage.upload_url(upload_id, size, UPLOAD_URL_SECONDS),
        "method": "PUT",
        "expires": iso(now + UPLOAD_URL_SECONDS),
    }, True


def get_package(repo: Repository, upload_id: str) -> Package:
    package = repo.get_package(upload_id) if isinstance(upload_id, str) and len(upload_id) <= 64 else None
    if package is None:
        raise NotFound(f"package {upload_id!r} does not exist", field="upload_id")
    return package


def list_packages(repo: Repository, query: dict[str, str], limit: int, cursor: str | None) -> Page[Package]:
    """One page of packages (creation order) with the filters applied to it: a filtered page may hold
    fewer than `limit` packages, even none, while `next_cursor` is not None."""
    unknown = set(query) - {"app", "model", "version", "state", "limit", "cursor"}
    if unknown:
        raise InvalidInput(f"unknown query parameter {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    state = query.get("state")
    if state is not None and state not in PACKAGE_STATES:
        raise InvalidInput(f"query 'state' must be one of {', '.join(PACKAGE_STATES)}", field="state")
    for name, check in (("app", check_app), ("model", check_model)):
        if name in query:
            checked(name, check, query[name])
    version = query.get("version")
    if version is not None:
        try:
            Version.parse(version)
        except ValueError as err:
            raise InvalidInput("query 'version' must be MAJOR.MINOR.PATCH", field="version") from err
    page = repo.packages_page(limit, cursor)
    return Page(tuple(
        p for p in page.items
        if (state is None or p.state == state)
        and (query.get("app") is None or p.app == query["app"])
        and (version is None or p.version_label == version)
        and (query.get("model") is None or query["model"] in p.models)
    ), page.next_cursor)


def retire(repo: Repository, upload_id: str) -> Package:
    def attempt() -> Package:
        package = get_package(repo, upload_id)
        if package.state == "RETIRED":
            return package
        if package.state != "AVAILABLE":
            raise Conflict(f"only AVAILABLE packages can be retired; this one is {package.state}", field="upload_id")
        retired = bumped(package, state="RETIRED")
        repo.save_package(retired)
        return retired

    return retrying(attempt)


def package_view(package: Package) -> dict[str, Any]:
    manifest = None
    if package.app is not None:
        manifest = {
            "package_id": package.package_id, "app": package.app, "version": package.version_label,
            "kind": package.kind, "models": list(package.models), "delta": package.is_delta,
            "base_version": package.base_version, "expires": package.expires, "key_id": package.key_id,
        }
    return {
        "upload_id": package.upload_id, "state": package.state, "reasons": list(package.reasons),
        "manifest": manifest, "package_id": package.package_id, "size": package.size,
        "declared_size": package.declared_size, "sha256": package.sha256, "repository_key": package.repository_key,
        "scanner": package.scanner, "created_at": iso(package.created_at), "scanned_at": iso(package.scanned_at),
        "replaces": package.replaces, "source": package.source or "api", "uploaded_by": package.uploaded_by,
        "staging_key": package.staging_key,
    }
