"""CORS for the operator web console when it is hosted on another origin than the API (on AWS: the
console's static files on S3 + CloudFront, the API on API Gateway; infra/README.md, "The web console").

`OTA_CONSOLE_ORIGIN` (one origin, e.g. `https://console.example.com`) is read when the app is imported
(`chalice package`/`deploy` import it with the stage's environment, as for OTA_AUTH): every route then
answers that origin's preflight (Chalice adds OPTIONS methods without auth) and its responses carry
`Access-Control-Allow-Origin`. Unset, as on the local stack (the console is served on the API's own
origin), nothing changes. Does not: authenticate (IAM or the bearer token still decide every request).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from chalice import CORSConfig

# beyond Chalice's own list (Authorization, Content-Type, X-Amz-Date, X-Amz-Security-Token, X-Api-Key)
ALLOW_HEADERS = ["Idempotency-Key"]
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def console_cors(environ: Mapping[str, str] = os.environ) -> CORSConfig | None:
    """The CORS configuration for OTA_CONSOLE_ORIGIN, or None when it is not set."""
    origin = environ.get("OTA_CONSOLE_ORIGIN", "").strip()
    if not origin:
        return None
    if not _ORIGIN.match(origin):
        raise ValueError(f"OTA_CONSOLE_ORIGIN must be one origin such as https://console.example.com, not {origin!r}")
    return CORSConfig(allow_origin=origin, allow_headers=ALLOW_HEADERS, expose_headers=["x-correlation-id"],
                      max_age=600)
