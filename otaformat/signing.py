"""ECDSA P-256 / SHA-256 signatures over the canonical manifest, and the trusted verifier.

Verification does no I/O (like python-tuf's trusted metadata set): it takes bytes and trusted public
keys and returns a `VerifiedManifest` or raises `VerificationError` with a precise reason. Private keys
are only ever handled by `sign_manifest` and `generate_key`; nothing here logs or stores them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .canonical import canonical_json, parse_json
from .errors import FormatError, MalformedError, VerificationError
from .manifest import Manifest
from .versions import Version

ALGORITHM = "ecdsa-p256-sha256"
MAX_SIGNATURES = 8
MAX_ENVELOPE_BYTES = 1 << 20


@dataclass(frozen=True)
class VerifiedManifest:
    """A manifest whose signature checked out against a trusted key. Only `verify_envelope` makes one."""

    manifest: Manifest
    key_id: str
    canonical: bytes


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise MalformedError("not a PEM private key") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MalformedError("private key is not an ECDSA P-256 key")
    return key


def load_public_key(pem: bytes | str) -> ec.EllipticCurvePublicKey:
    """Parse a PEM SubjectPublicKeyInfo holding a P-256 key; raise MalformedError otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise MalformedError("not a PEM public key") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MalformedError("public key is not an ECDSA P-256 key")
    return key


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, first 16 hex characters."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def sign_manifest(manifest: Manifest, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """Return the signed envelope {"manifest": ..., "signatures": [...]} as a dict."""
    body = manifest.to_dict()
    signature = key.sign(canonical_json(body), ec.ECDSA(hashes.SHA256()))
    return {
        "manifest": body,
        "signatures": [
            {"alg": ALGORITHM, "keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}
        ],
    }


def encode_envelope(envelope: Mapping[str, Any]) -> bytes:
    return canonical_json(dict(envelope))


def parse_envelope(data: bytes) -> dict[str, Any]:
    """Parse envelope bytes (strict JSON, bounded); does not verify anything."""
    envelope = parse_json(data, max_bytes=MAX_ENVELOPE_BYTES)
    if not isinstance(envelope, dict) or set(envelope) != {"manifest", "signatures"}:
        raise MalformedError("envelope must be an object with exactly 'manifest' and 'signatures'")
    return envelope


def verify_envelope(
    envelope: Mapping[str, Any] | bytes, trusted: Mapping[str, ec.EllipticCurvePublicKey]
) -> VerifiedManifest:
    """Check one signature by a trusted key over the canonical manifest, then the schema.

    `trusted` maps key ids to public keys. Pure: no I/O, no clock. Raises VerificationError.
    """
    try:
        env = parse_envelope(envelope) if isinstance(envelope, bytes | bytearray) else dict(envelope)
        if set(env) != {"manifest", "signatures"}:
            raise MalformedError("envelope must be an object with exactly 'manifest' and 'signatures'")
    except FormatError as err:
        raise VerificationError(f"envelope is malformed: {err.reason}", code="malformed") from err
    canonical, kid = verify_signatures(env["manifest"], env.get("signatures"), trusted, "package", "manifest")
    try:
        manifest = Manifest.from_dict(env["manifest"])
    except FormatError as err:
        raise VerificationError(f"signed manifest is invalid: {err.reason}", code=err.code) from err
    return VerifiedManifest(manifest=manifest, key_id=kid, canonical=canonical)


def verify_signatures(
    body: object, signatures: object, trusted: Mapping[str, ec.EllipticCurvePublicKey], what: str, part: str
) -> tuple[bytes, str]:
    """One valid signature by a trusted key over canonical_json(body): (the canonical bytes, its key id).

    Shared by packages and signed commands (otaformat.commands). Pure. VerificationError codes:
    unsigned, malformed, untrusted-key, bad-signature; `what`/`part` name the thing in the messages."""
    if not isinstance(signatures, list) or not signatures:
        raise VerificationError(f"{what} is unsigned: no signatures", code="unsigned")
    if len(signatures) > MAX_SIGNATURES:
        raise VerificationError(f"more than {MAX_SIGNATURES} signatures", code="malformed")
    try:
        canonical = canonical_json(body)
    except FormatError as err:
        raise VerificationError(f"{part} cannot be canonicalised: {err.reason}", code="malformed") from err
    reasons = []
    for entry in signatures:
        reason, kid = _check_one(entry, canonical, trusted, part)
        if reason is None:
            return canonical, kid
        reasons.append(reason)
    code = "untrusted-key" if all(r.startswith("key id") for r in reasons) else "bad-signature"
    raise VerificationError("; ".join(reasons), code=code)


def _check_one(
    entry: object, canonical: bytes, trusted: Mapping[str, ec.EllipticCurvePublicKey], part: str = "manifest"
) -> tuple[str | None, str]:
    if not isinstance(entry, dict):
        return "signature entry is not an object", ""
    alg, kid, sig = entry.get("alg"), entry.get("keyid"), entry.get("sig")
    if alg != ALGORITHM:
        return f"signature algorithm {str(alg)[:40]!r} is not supported (only {ALGORITHM})", ""
    if not isinstance(kid, str) or kid not in trusted:
        return f"key id {str(kid)[:40]!r} is not trusted", ""
    if not isinstance(sig, str) or not sig:
        return f"signature by {kid} is empty", kid
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        return f"signature by {kid} is not base64", kid
    try:
        trusted[kid].verify(raw, canonical, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return f"signature by {kid} does not match the {part}", kid
    return None, kid


def check_policy(
    manifest: Manifest,
    *,
    now: datetime,
    model: str | None = None,
    version_floor: str | None = None,
    agent_version: str | None = None,
) -> None:
    """Device-side policy on a verified manifest: expiry, model, downgrade floor, agent version.

    Pure: the caller passes the clock and the persisted floor. Raises VerificationError.
    """
    if manifest.expires_at() <= now:
        raise VerificationError(f"manifest expired at {manifest.expires}", code="expired")
    if model is not None and model not in manifest.models:
        raise VerificationError(
            f"package is for model(s) {', '.join(manifest.models)}, not {model}", code="wrong-model"
        )
    if version_floor is not None and Version.parse(manifest.version) < Version.parse(version_floor):
        raise VerificationError(
            f"version {manifest.version} is below the installed floor {version_floor} (downgrade)",
            code="downgrade",
        )
    if agent_version is not None and Version.parse(agent_version) < Version.parse(manifest.min_agent_version):
        raise VerificationError(
            f"package needs agent {manifest.min_agent_version}, this agent is {agent_version}",
            code="agent-too-old",
        )
