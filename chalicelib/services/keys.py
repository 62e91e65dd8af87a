"""Publisher keys: the public keys the scan trusts (key id = otaformat.signing.key_id)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from otaformat import signing

from ..domain.errors import Conflict, InvalidInput, NotFound
from ..domain.models import PublisherKey
from ..domain.ports import Repository
from .common import checked, iso, text


def register_key(repo: Repository, now: float, body: dict[str, Any]) -> tuple[PublisherKey, bool]:
    """Store a key; return (key, created). Registering the same key again is idempotent."""
    pem = text(body, "public_key", 8192)
    name = text(body, "name", 128)
    public = checked("public_key", signing.load_public_key, pem)
    kid = signing.key_id(public)
    existing = repo.get_key(kid)
    if existing is not None:
        return existing, False
    key = PublisherKey(key_id=kid, name=str(name), public_key_pem=signing.public_key_pem(public).decode(),
                       created_at=now)
    try:
        repo.put_key(key)
    except Conflict:
        return repo.get_key(kid) or key, False
    return key, True


def delete_key(repo: Repository, key_id: str) -> None:
    if not isinstance(key_id, str) or not 1 <= len(key_id) <= 64:
        raise InvalidInput("key id must be 1..64 characters", field="key_id")
    if not repo.delete_key(key_id):
        raise NotFound(f"key {key_id!r} does not exist", field="key_id")


def trusted_keys(repo: Repository) -> dict[str, ec.EllipticCurvePublicKey]:
    return {k.key_id: signing.load_public_key(k.public_key_pem) for k in repo.list_keys()}


def key_view(key: PublisherKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "name": key.name, "public_key": key.public_key_pem, "created_at": iso(key.created_at)}
