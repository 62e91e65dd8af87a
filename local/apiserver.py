"""The HTTP API of the local stack: the Chalice app from app.py behind chalice's local API Gateway.

`python -m local.apiserver --port P [--project-dir DIR]` imports `app` from DIR/app.py and serves it
with chalice.local's threaded server (the same LocalGateway `chalice local` uses), without the
reloader and without reading .chalice/config.json's environment, so the stack's environment is the
one the app sees. It does not run triggers (the bridge does).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.apiserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument("--module", default="app", help="module holding the Chalice app (default app)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(args.project_dir.resolve()))
    from chalice.config import Config
    from chalice.local import create_local_server

    if not (args.project_dir / f"{args.module}.py").is_file():
        print(f"error: no {args.module}.py in {args.project_dir}", file=sys.stderr)
        return 2
    try:
        app = importlib.import_module(args.module).app
    except Exception as err:
        print(f"error: cannot import the Chalice app from {args.project_dir}/{args.module}.py: {err}",
              file=sys.stderr)
        raise
    config = Config.create(chalice_stage="local", app_name=app.app_name, lambda_timeout=60,
                           lambda_memory_size=512)
    server = create_local_server(app, config, args.host, args.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
