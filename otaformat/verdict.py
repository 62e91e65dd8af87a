"""One verdict on package bytes, shared by `ota-pack verify`, the cloud scan and the device agent. Pure.

`judge` runs the whole check in a fixed order (container, signature, schema, payload, content,
policy, and for a delta with a base: base hash, patch, result hashes) and turns every failure into a
`Verdict` with the `VerificationError` code, so the three callers decide identically on the same bytes
(tests/fixtures/expected.json pins the expected codes). It never raises on hostile input and does no
I/O: the caller passes the clock, the trusted keys and the base content.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from .container import verify_package
from .delta import apply_verified_delta
from .errors import FormatError
from .manifest import Manifest
from .signing import check_policy, key_id, load_public_key


@dataclass(frozen=True)
class Verdict:
    """accepted with code None, or rejected with a machine code and a human reason."""

    accepted: bool
    code: str | None
    reason: str | None
    manifest: Manifest | None
    key_id: str | None = None
    content: bytes | None = field(default=None, repr=False)  # full content (a delta's result if applied)


def trusted_keys(pems: Iterable[bytes | str]) -> dict[str, ec.EllipticCurvePublicKey]:
    """Map key id -> public key for PEM public keys; raises MalformedError for a bad PEM."""
    keys = [load_public_key(pem) for pem in pems]
    return {key_id(k): k for k in keys}


def judge(
    data: bytes,
    trusted: Mapping[str, ec.EllipticCurvePublicKey],
    *,
    now: datetime,
    model: str | None = None,
    version_floor: str | None = None,
    agent_version: str | None = None,
    base_content: bytes | None = None,
) -> Verdict:
    """Verify package bytes end to end; return the verdict instead of raising.

    For a delta package, `base_content` (the verified content of the base full package) makes the
    verdict cover the patched result too; without it only the patch bytes are checked.
    """
    manifest: Manifest | None = None
    try:
        package = verify_package(bytes(data), trusted)
        manifest = package.manifest
        check_policy(manifest, now=now, model=model, version_floor=version_floor, agent_version=agent_version)
        content = package.content
        if manifest.is_delta and base_content is not None:
            content = apply_verified_delta(manifest, base_content, package.content)
    except FormatError as err:
        return Verdict(False, err.code, err.reason, manifest)
    except (ValueError, OverflowError, MemoryError) as err:  # fail closed on anything unforeseen
        return Verdict(False, "malformed", f"package could not be checked: {type(err).__name__}", manifest)
    return Verdict(True, None, None, manifest, package.verified.key_id, content)
