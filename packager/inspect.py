"""Render a package's manifest for `ota-pack inspect` WITHOUT trusting it. Pure: bytes in, text out.

Nothing is verified here: the output says so on its first line. Untrusted strings are shown through
`json.dumps(..., ensure_ascii=True)` so terminal control characters cannot reach the screen.
"""

from __future__ import annotations

import json
from typing import Any

from otaformat.container import split_container
from otaformat.errors import FormatError
from otaformat.manifest import Manifest
from otaformat.signing import parse_envelope

BANNER = "UNVERIFIED: nothing below has been checked; run `ota-pack verify` before trusting it"


def _show(value: object, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[:limit] + "..."


def describe(data: bytes, as_json: bool = False) -> tuple[str, bool]:
    """Return (text, ok). ok is False when the bytes are not even a parseable package."""
    try:
        container = split_container(data)
        envelope = parse_envelope(container.envelope)
    except FormatError as err:
        if as_json:
            return json.dumps({"verified": False, "error": err.reason}, ensure_ascii=True), False
        return f"{BANNER}\nnot a readable package: {err.reason}", False
    raw = envelope["manifest"]
    signatures = envelope["signatures"] if isinstance(envelope["signatures"], list) else []
    sigs = [
        {"alg": s.get("alg"), "keyid": s.get("keyid")} if isinstance(s, dict) else {"alg": None, "keyid": None}
        for s in signatures[:16]
    ]
    schema_error = None
    try:
        manifest: Manifest | None = Manifest.from_dict(raw)
    except FormatError as err:
        manifest, schema_error = None, f"{err.code}: {err.reason}"
    if as_json:
        doc: dict[str, Any] = {
            "verified": False,
            "manifest": raw,
            "signatures": sigs,
            "payload_bytes": len(container.payload),
            "schema_error": schema_error,
        }
        return json.dumps(doc, ensure_ascii=True, sort_keys=True, indent=2), True
    return "\n".join([BANNER, *_summary(raw, manifest, schema_error, sigs, len(container.payload))]), True


def _summary(
    raw: Any, manifest: Manifest | None, schema_error: str | None, sigs: list[dict[str, Any]], payload_bytes: int
) -> list[str]:
    lines = []
    if manifest is None:
        lines.append(f"manifest does not follow the schema: {schema_error}")
        if isinstance(raw, dict):
            lines += [f"  {_show(k, 40)}: {_show(v)}" for k, v in list(raw.items())[:40]]
    else:
        m = manifest
        lines += [
            f"package_id:   {_show(m.package_id)}",
            f"app:          {_show(m.app)}  version {_show(m.version)}  kind {_show(m.kind)}",
            f"models:       {_show(list(m.models))}",
            f"created:      {m.created}  expires {m.expires}",
            f"min agent:    {m.min_agent_version}",
            f"payload:      {m.payload.compression}, {m.payload.length} bytes -> {m.payload.raw_length} bytes",
            f"              sha256 {m.payload.sha256}",
        ]
        if m.delta:
            d = m.delta
            lines += [
                f"delta:        from {d.base_version} ({d.encoding}), base sha256 {d.base_sha256}",
                f"              target {d.target_length} bytes, sha256 {d.target_sha256}",
            ]
        lines.append(f"files:        {len(m.files)}")
        lines += [f"  {oct(f.mode)} {f.length:>12} {f.sha256[:16]} {_show(f.path)}" for f in m.files[:200]]
        if len(m.files) > 200:
            lines.append(f"  ... {len(m.files) - 200} more")
        lines += [f"script:       {role} -> {_show(path)}" for role, path in m.scripts]
        lines += [f"label:        {_show(k)} = {_show(v)}" for k, v in m.extra]
    lines.append(f"payload bytes present: {payload_bytes}")
    lines += [f"signature:    {_show(s['alg'])} by key {_show(s['keyid'])} (not checked)" for s in sigs] or [
        "signature:    none"
    ]
    return lines
