"""The HTTP API of the local stack: the Chalice app from app.py behind chalice's local API Gateway.

`python -m local.apiserver --port P [--project-dir DIR]` imports `app` from DIR/app.py and serves it
with chalice.local's LocalGateway (the one `chalice local` uses), without the reloader and without
reading .chalice/config.json's environment, so the stack's environment is the one the app sees. It does
not run triggers (the bridge does). Three things differ from plain chalice.local, all to behave like
API Gateway in front of the same app:

- a threading server with a real listen backlog (`request_queue_size` 128, daemon threads), so a burst
  of simultaneous clients is queued, not reset (chalice.local's server keeps socketserver's 5);
- the path is taken literally up to `?`: chalice.local runs it through `urlparse`, which drops a
  `;params` suffix of the last segment (`DELETE /devices/dev-1;x` would reach `dev-1`); API Gateway
  hands the app `dev-1;x`, which the app's id validation refuses;
- a method the server has no handler for (TRACE, CONNECT, PROPFIND, anything made up) and every
  error the HTTP layer answers itself get a JSON body in the API's error shape
  (`{"error", "message"}`, chalicelib.api.errors) instead of http.server's HTML page: 405
  `MethodNotAllowedError` for a method, as Chalice answers an undeclared method of a known route.

It also serves the operator web console's static files under `/console/` (GET and HEAD only; which
path is which file: local/console.py), on the same origin as the API, so the console needs no CORS.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    LambdaEventConverter,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    MatchResult,
    RouteMatcher,
    ThreadedHTTPServer,
)

from local import console

REQUEST_QUEUE_SIZE = 128
# what API Gateway routes; anything else is answered 405 before it reaches the app
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class LiteralRouteMatcher(RouteMatcher):
    """chalice.local's matcher, but the path is everything before `?`, `;` and `#` included."""

    def match_route(self, url: str) -> MatchResult:
        path, _, query = url.partition("?")
        if path != "/" and path.endswith("/"):  # as API Gateway (and chalice.local) do
            path = path[:-1]
        parts = path.split("/")
        for route_url in self.route_urls:
            url_parts = route_url.split("/")
            if len(parts) != len(url_parts):
                continue
            captured: dict[str, str] = {}
            for given, pattern in zip(parts, url_parts, strict=True):
                if pattern.startswith("{") and pattern.endswith("}"):
                    captured[pattern[1:-1]] = given
                elif given != pattern:
                    break
            else:
                return MatchResult(route_url, captured, parse_qs(query, keep_blank_values=True))
        raise ValueError(f"No matching route found for: {url}")


class LocalApiHandler(ChaliceRequestHandler):
    """chalice.local's handler with the literal path matcher and JSON errors from the HTTP layer."""

    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any, config: Any) -> None:
        self.local_gateway = LocalGateway(app_object, config)
        self.local_gateway.event_converter = LambdaEventConverter(LiteralRouteMatcher(list(app_object.routes)),
                                                                  app_object.api.binary_types)
        # skip ChaliceRequestHandler.__init__ (it would build a second gateway with the stock matcher)
        super(ChaliceRequestHandler, self).__init__(request, client_address, server)

    def do_GET(self) -> None:
        if console.wants(self.path):
            self._serve_console()
        else:
            self._generic_handle()

    do_HEAD = do_GET

    def _serve_console(self) -> None:
        """A console file (or its directory's redirect); anything else under /console/ is a JSON 404."""
        bare = self.path.partition("?")[0]
        if bare == console.PREFIX:
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", console.PREFIX + "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        file = console.resolve(self.path)
        if file is None:
            hint = "" if console.installed() else " (the console's toolkit is not installed: make setup)"
            self.send_error(HTTPStatus.NOT_FOUND, f"no console file {bare[:200]}{hint}")
            return
        data = file.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", console.content_type(file))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every answer http.server makes itself, in the API's JSON error shape (never an HTML page)."""
        if code == HTTPStatus.NOT_IMPLEMENTED:  # no do_<METHOD>: a method the API does not support
            status, error = HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowedError"
            message = f"Unsupported method: {self.command}"
        else:
            status = HTTPStatus(code)
            error = status.phrase.replace(" ", "").replace("-", "")
            message = message or status.phrase
        body = json.dumps({"error": error, "message": message[:500]}).encode()
        self.log_error("code %d, message %s", status.value, message)
        self.send_response(status.value, status.phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.close_connection = True
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ", ".join(METHODS))
        if self.command != "HEAD" and status.value >= 200 and status.value not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.end_headers()


class LocalApiHTTPServer(ThreadedHTTPServer):
    """One daemon thread per connection, and a listen backlog that absorbs a burst of clients."""

    request_queue_size = REQUEST_QUEUE_SIZE
    daemon_threads = True
    allow_reuse_address = True


def create_server(app: Any, config: Any, host: str, port: int) -> LocalDevServer:
    """As chalice.local.create_local_server: the app's class gets LocalChalice's thread-local
    `current_request` (each request thread sees its own request), then our handler and server."""
    CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
    app.__class__ = CustomLocalChalice
    return LocalDevServer(app, config, host, port, handler_cls=LocalApiHandler, server_cls=LocalApiHTTPServer)


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
    server = create_server(app, config, args.host, args.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
