"""Register a simulated fleet through the real API, in parallel: each device its own EC P-256 key and certificate.

For each EPN: `POST /devices {"epn","model"}` as the operator (a registration token), then, as the
device, a fresh EC P-256 key and a CSR with CN = EPN (agent.register.make_csr, the agent's own code)
and `POST /devices/{epn}/register {"token","csr","agent_version","apps"}` (docs/api.md). The key,
certificate and CA are written under `directory/<epn>.key|.pem` and `ca.pem` (ssl needs files). A
thread pool keeps `workers` registrations in flight (the local API is a threaded server; moto serialises
DynamoDB). An answer 5xx is retried, as a device would. It returns the identities; it does not connect
anything.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from agent.register import make_csr

RETRIES = 5


@dataclass(frozen=True)
class Identity:
    epn: str
    cert: str
    key: str


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def register_fleet(api_url: str, operator_token: str, epns: list[str], model: str, directory: Path, *,
                   apps: dict[str, str] | None = None, workers: int = 16,
                   progress: Callable[[int, float], None] | None = None) -> tuple[list[Identity], Path]:
    """Register every EPN; (identities in EPN order, CA file). Raises on the first refused registration."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_file = directory / "ca.pem"
    local = threading.local()
    lock = threading.Lock()
    done = [0]
    began = time.perf_counter()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        session: requests.Session = local.session
        return session

    def preauthorise(http: requests.Session, epn: str) -> str:
        """The registration token; a 5xx is retried, and a device whose creation answered 5xx but happened
        (409 on the retry) is deregistered and pre-authorised again (docs/api.md: a new token)."""
        auth = {"Authorization": f"Bearer {operator_token}"}
        failed = False
        for attempt in range(RETRIES):
            made = http.post(f"{api_url}/devices", json={"epn": epn, "model": model}, timeout=300, headers=auth)
            if made.status_code == 201:
                return str(made.json()["registration_token"])
            if made.status_code == 409 and failed:
                http.delete(f"{api_url}/devices/{epn}", timeout=300, headers=auth)
            elif made.status_code < 500:
                break
            failed = True
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"POST /devices for {epn}: HTTP {made.status_code} {made.text[:200]}")

    def one(epn: str) -> Identity:
        http = session()
        token = preauthorise(http, epn)
        key_pem, csr_pem = make_csr(epn)
        body: dict[str, Any] = {"token": token, "csr": csr_pem.decode(), "agent_version": "1.0.0",
                                "apps": dict(apps or {})}
        for attempt in range(RETRIES):  # a retry with the same key and token is accepted (docs/api.md)
            answer = http.post(f"{api_url}/devices/{epn}/register", json=body, timeout=300)
            if answer.status_code < 500:
                break
            time.sleep(0.2 * (attempt + 1))
        if answer.status_code != 200:
            raise RuntimeError(f"register {epn}: HTTP {answer.status_code} {answer.text[:200]}")
        reply = answer.json()
        key, cert = directory / f"{epn}.key", directory / f"{epn}.pem"
        _write(key, key_pem, 0o600)
        _write(cert, reply["certificate"].encode(), 0o644)
        with lock:
            if not ca_file.exists():
                _write(ca_file, reply["ca"].encode(), 0o644)
            done[0] += 1
            if progress is not None:
                progress(done[0], time.perf_counter() - began)
        return Identity(epn, str(cert), str(key))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        identities = list(pool.map(one, epns))
    return identities, ca_file
