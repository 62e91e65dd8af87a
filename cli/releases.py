"""`ota releases publish APP VERSION --model M [--channel C]` and `ota releases list`.

Publishing is the operator's statement of what "newer" means: devices of the model that follow the
channel and update the app automatically install it (as a one-device job each, a delta when possible).
"""

from __future__ import annotations

from cli import render
from cli.client import ApiClient
from cli.commands import Output

RELEASE_COLUMNS = [("RELEASE", "release_id"), ("CREATED", "created_at"), ("APP", "app"), ("VERSION", "version"),
                   ("MODEL", "model"), ("CHANNEL", "channel"), ("PACKAGE", "package_id")]


def publish(api: ApiClient, out: Output, app: str, version: str, model: str, channel: str) -> int:
    made = api.post("/releases", {"app": app, "version": version, "model": model, "channel": channel})
    out.emit(made, lambda: f"release {made.get('release_id')} published (package {made.get('package_id')}); "
                           f"offered now to {made.get('offered', 0)} device(s), the others get it at their "
                           "next check")
    return 0


def list_(api: ApiClient, out: Output, limit: int | None = None) -> int:
    answer = api.get_all("/releases", "releases", None, limit)
    rows = sorted(answer.get("releases", []), key=lambda r: str(r.get("created_at") or ""), reverse=True)
    out.emit(answer, lambda: render.table(rows, RELEASE_COLUMNS))
    return 0
