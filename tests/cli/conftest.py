"""A small fake of the operator API (http.server in a thread) that records what the CLI sends."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cli.commands import Output

Reply = tuple[int, Any]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class FakeApi:
    """Routes map (METHOD, path-with-query) to a reply, or to a list of replies served in turn. A route
    written without the CLI's page size (`limit=1000`, what ApiClient.get_all asks for) answers it too."""

    url: str = ""
    routes: dict[tuple[str, str], Reply | list[Reply] | Callable[[Seen], Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def reply(self, request: Seen) -> Reply:
        route = self.routes.get((request.method, request.path))
        if route is None:
            bare = request.path.replace("&limit=1000", "").replace("?limit=1000&", "?").replace("?limit=1000", "")
            route = self.routes.get((request.method, bare))
        if route is None:
            return 404, {"error": "NotFound", "message": f"no route {request.method} {request.path}"}
        if callable(route):
            return route(request)
        if isinstance(route, list):
            return route.pop(0) if len(route) > 1 else route[0]
        return route


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Seen(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            api.seen.append(request)
            status, body = api.reply(request)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *_args: Any) -> None:
            return

    return Handler


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def output() -> Output:
    return Output(stream=io.StringIO(), sleep=lambda _s: None)
