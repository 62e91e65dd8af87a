"""Package references an operator can type: an upload id, or a name the package is known by.

    up-0123456789abcdef0123     the upload id itself
    demo@1.1.0                  the AVAILABLE full package of app demo, version 1.1.0
    demo@1.0.0..1.1.0           the AVAILABLE delta from 1.0.0 to 1.1.0
    demo@1.1.0:m1               ... the one for model m1, when builds for several models exist

A name resolves through `GET /packages` to exactly one package; none, or several that the name does not
tell apart, is a usage error that lists the candidates. Does not: print anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cli.client import ApiClient, UsageError

_REF = re.compile(r"^(?P<app>[a-z0-9][a-z0-9._-]{0,63})@(?:(?P<base>[0-9.]{5,20})\.\.)?(?P<version>[0-9.]{5,20})"
                  r"(?::(?P<model>[A-Za-z0-9_-]{1,64}))?$")
FORMS = "an upload id (up-...), APP@VERSION, APP@BASE..VERSION (a delta), optionally :MODEL"


@dataclass(frozen=True)
class PackageName:
    app: str
    version: str
    base: str | None = None
    model: str | None = None

    def __str__(self) -> str:
        text = f"{self.app}@{self.base + '..' if self.base else ''}{self.version}"
        return text + (f":{self.model}" if self.model else "")


def parse(ref: str) -> PackageName | None:
    """A PackageName, or None for anything else (taken as an upload id)."""
    match = _REF.match(ref)
    if match is None:
        if "@" in ref:
            raise UsageError(f"package {ref[:80]!r} is not {FORMS}")
        return None
    return PackageName(match["app"], match["version"], match["base"], match["model"])


def matches(package: dict[str, Any], name: PackageName, model: str | None) -> bool:
    manifest = package.get("manifest") or {}
    wanted_model = name.model or model
    return (manifest.get("app") == name.app and manifest.get("version") == name.version
            and bool(manifest.get("delta")) == (name.base is not None)
            and (name.base is None or manifest.get("base_version") == name.base)
            and (wanted_model is None or wanted_model in (manifest.get("models") or [])))


def resolve(api: ApiClient, ref: str, model: str | None = None) -> str:
    """The upload id `ref` names; `model` (a job's target model) narrows a name without :MODEL."""
    name = parse(ref)
    if name is None:
        return ref
    listed = api.get_all("/packages", "packages", {"app": name.app, "version": name.version, "state": "AVAILABLE"})
    found = [p for p in listed.get("packages", []) if matches(p, name, model)]
    if len({p.get("sha256") for p in found}) == 1:  # the same bytes uploaded twice are one package
        found = sorted(found, key=lambda p: str(p.get("created_at")))[:1]
    if len(found) == 1:
        return str(found[0]["upload_id"])
    if not found:
        raise UsageError(f"no AVAILABLE package is {name}{f' for model {model}' if model and not name.model else ''}"
                         "; see 'ota packages list'")
    options = ", ".join(f"{p['upload_id']} (models {','.join((p.get('manifest') or {}).get('models') or [])})"
                        for p in found[:5])
    raise UsageError(f"{name} names {len(found)} packages: {options}; add :MODEL or give the upload id")
