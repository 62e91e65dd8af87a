"""The local stack as a user first meets it, with real processes (moto, mosquitto with mTLS, API, bridge):
a burst of clients is served, unknown methods get our JSON 405, a path id is taken literally, concurrent
job creations all succeed with their executions, and a device deregistered after a broker restart cannot
connect."""

from __future__ import annotations

import http.client
import io
import json
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from local import apiserver, mosquitto, procs, stack
from local.ca import Issued
from local.scenario import Session
from tests.e2e.conftest import make_release

from .conftest import WAIT, Client, connect

MODEL = "e2e-m"  # make_release builds its package for this model


def _port(state: dict[str, Any]) -> int:
    return int(urlsplit(state["api_url"]).port or 0)


def _raw(state: dict[str, Any], method: str, path: str, body: Any = None, token: bool = True,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request over its own connection, the path sent exactly as given (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", _port(state), timeout=WAIT * 2)
    try:
        sent = {"Accept": "application/json", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {state['token']}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=sent)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def _json(state: dict[str, Any], method: str, path: str, body: Any = None,
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, data = _raw(state, method, path, body, headers=headers)
    return status, json.loads(data) if data else None


def _epn(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _registered_device(state: dict[str, Any], work: Path, epn: str, model: str = MODEL) -> Issued:
    """Pre-authorise `epn`, register it with a CSR through the API; its key and certificate from the stack's CA."""
    status, made = _json(state, "POST", "/devices", {"epn": epn, "model": model})
    assert status == 201, made
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, epn)])).sign(key, hashes.SHA256())
    status, answer = _json(state, "POST", f"/devices/{epn}/register", {
        "token": made["registration_token"], "agent_version": "1.0.0",
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})
    assert status == 200, answer
    work.mkdir(parents=True, exist_ok=True)
    issued = Issued(work / f"{epn}.pem", work / f"{epn}.key")
    issued.cert.write_text(answer["certificate"])
    issued.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return issued


def _try_connect(state: dict[str, Any], issued: Issued) -> Client | str:
    holder = connect(int(state["mqtt"]["port"]), Path(state["mqtt"]["ca"]), issued)
    if isinstance(holder, Client):
        holder.client.disconnect()
        holder.client.loop_stop()
    return holder


# -- b. a burst of simultaneous clients ------------------------------------------------------------------------


def _listen_backlog(port: int) -> int:
    """The accept-queue length of the socket listening on `port` (ss shows it as Send-Q of a LISTEN line)."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed")
    out = subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    fields = out.split()
    assert fields and fields[0] == "LISTEN", out
    return int(fields[2])


def test_fifty_simultaneous_connections_all_get_an_answer(local_stack: dict[str, Any]) -> None:
    assert _listen_backlog(_port(local_stack)) >= apiserver.REQUEST_QUEUE_SIZE  # socketserver's default is 5
    n = 50
    barrier = threading.Barrier(n)

    def one(_: int) -> int | str:
        barrier.wait()
        try:  # no token: the authorizer answers 401 without touching moto
            return _raw(local_stack, "GET", "/devices", token=False)[0]
        except OSError as err:
            return repr(err)

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(one, range(n)))
    assert answers == [401] * n


# -- c. methods the API does not have --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "MKCOL", "BREW", "get"])
@pytest.mark.parametrize("path", ["/devices", "/devices/dev-1", "/nowhere"])
def test_an_unsupported_method_gets_a_json_405_in_our_error_shape(local_stack: dict[str, Any], method: str,
                                                                  path: str) -> None:
    status, headers, body = _raw(local_stack, method, path)
    assert status == 405, body[:200]
    assert headers["content-type"].startswith("application/json"), headers
    assert json.loads(body) == {"error": "MethodNotAllowedError", "message": f"Unsupported method: {method}"}


def test_a_declared_route_with_an_undeclared_method_keeps_the_apps_405(local_stack: dict[str, Any]) -> None:
    status, body = _json(local_stack, "PUT", "/devices", {})
    assert (status, body) == (405, {"error": "MethodNotAllowedError", "message": "Unsupported method: PUT"})


# -- d. a path id is taken literally ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [";x", ";", ";epn=other", "#x"])
def test_a_path_id_with_a_semicolon_never_reaches_the_device_before_it(
        local_stack: dict[str, Any], tmp_path: Path, suffix: str) -> None:
    epn = _epn("semi")
    _registered_device(local_stack, tmp_path, epn)
    status, headers, body = _raw(local_stack, "DELETE", f"/devices/{epn}{suffix}")
    assert status in (400, 404), body
    assert headers["content-type"].startswith("application/json") and "error" in json.loads(body)
    status, device = _json(local_stack, "GET", f"/devices/{epn}")
    assert (status, device["state"]) == (200, "REGISTERED")
    status, shown = _json(local_stack, "GET", f"/devices/{epn}{suffix}")
    assert status in (400, 404), shown
    # the control: the same request without the suffix deregisters it
    status, gone = _json(local_stack, "DELETE", f"/devices/{epn}")
    assert (status, gone["state"]) == (200, "DEREGISTERED")


@pytest.mark.parametrize(("url", "route", "captured", "query"), [
    ("/devices/dev-1;x", "/devices/{epn}", {"epn": "dev-1;x"}, {}),
    ("/devices/dev-1;x/executions?a=1&b=", "/devices/{epn}/executions", {"epn": "dev-1;x"}, {"a": ["1"], "b": [""]}),
    ("/devices/dev-1/", "/devices/{epn}", {"epn": "dev-1"}, {}),
    ("/devices", "/devices", {}, {}),
])
def test_the_local_gateway_captures_path_ids_literally(url: str, route: str, captured: dict[str, str],
                                                       query: dict[str, list[str]]) -> None:
    matcher = apiserver.LiteralRouteMatcher(["/devices", "/devices/{epn}", "/devices/{epn}/executions"])
    match = matcher.match_route(url)
    assert (match.route, match.captured, match.query_params) == (route, captured, query)


class _Untouchable:
    """A dependency the request must never reach: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the request reached the service ({name}) with an invalid path id")


@pytest.mark.parametrize("epn", ["dev-1;x", "dev-1;", "dev-1;epn=dev-2"])
def test_on_api_gateway_the_app_gets_the_literal_id_and_refuses_it(epn: str) -> None:
    """API Gateway hands the Lambda the path parameter as sent: the app's own EPN check refuses it."""
    from chalice.local import LambdaContext

    import app as application
    from chalicelib import bootstrap

    untouchable = _Untouchable()
    bootstrap.configure(SimpleNamespace(repository=untouchable, signer=untouchable, registry=untouchable,  # type: ignore[arg-type]
                                        publisher=untouchable, clock=lambda: 0.0))
    event = {"resource": "/devices/{epn}", "path": f"/devices/{epn}", "httpMethod": "DELETE",
             "headers": {"accept": "application/json"}, "multiValueHeaders": {},
             "queryStringParameters": None, "multiValueQueryStringParameters": None,
             "pathParameters": {"epn": epn}, "stageVariables": None, "body": None, "isBase64Encoded": False,
             "requestContext": {"resourcePath": "/devices/{epn}", "httpMethod": "DELETE", "path": f"/devices/{epn}",
                                "requestId": "r-1", "identity": {"sourceIp": "127.0.0.1"}}}
    try:
        answer = application.app(event, LambdaContext("api", 512, 60_000))
    finally:
        bootstrap.reset()
    assert answer["statusCode"] == 400, answer
    assert json.loads(answer["body"])["field"] == "epn"


# -- e. concurrent job creations -------------------------------------------------------------------------------


FILLER = 3000


def _fill_table(state: dict[str, Any]) -> None:
    """Items no query of the service reads (no index attributes): a table that has been used for a while,
    so the copy moto takes at the start of each transaction lasts long enough for threads to overlap."""
    db = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "dynamodb", region_name="us-east-1", endpoint_url=state["moto_url"])
    table = state["env"]["OTA_TABLE_NAME"]
    run = secrets.token_hex(4)
    for start in range(0, FILLER, 25):
        pending: dict[str, Any] = {table: [
            {"PutRequest": {"Item": {"pk": {"S": f"FILLER#{run}#{i}"}, "sk": {"S": "FILLER"}, "doc": {"S": "x" * 400}}}}
            for i in range(start, start + 25)]}
        while pending:
            pending = db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


@pytest.fixture(scope="module")
def job_setup(local_stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """An AVAILABLE package for MODEL, five registered devices of that model, a table of some size."""
    work = tmp_path_factory.mktemp("jobs")
    _fill_table(local_stack)
    release = make_release(Session(local_stack, work, stream=io.StringIO()), size=64 * 1024)
    epns = [_epn("conc") for _ in range(5)]
    for epn in epns:
        _registered_device(local_stack, work / "devices", epn)
    return release.upload_id, epns


def _create_jobs(state: dict[str, Any], body: dict[str, Any], keys: list[str]) -> list[tuple[int, Any]]:
    barrier = threading.Barrier(len(keys))

    def one(key: str) -> tuple[int, Any]:
        barrier.wait()
        return _json(state, "POST", "/jobs", body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(len(keys)) as pool:
        return list(pool.map(one, keys))


def _executions(state: dict[str, Any], job_id: str) -> list[str]:
    status, listed = _json(state, "GET", f"/jobs/{job_id}/executions")
    assert status == 200, listed
    return sorted(e["epn"] for e in listed["executions"])


def test_concurrent_job_creations_all_succeed_with_their_executions(
        local_stack: dict[str, Any], job_setup: tuple[str, list[str]]) -> None:
    """20 distinct Idempotency-Keys and one key sent 10 times, all at once: the losing transactions of the
    shared key are cancelled (moto rolls its table back) while the others write jobs and executions."""
    upload_id, epns = job_setup
    body = {"package_id": upload_id, "targets": {"devices": epns}, "block_size": 16384, "window": 16}
    _, before = _json(local_stack, "GET", "/jobs")
    distinct = [f"conc-{secrets.token_hex(6)}" for _ in range(20)]
    shared = f"same-{secrets.token_hex(6)}"
    answers = dict(zip(range(30), _create_jobs(local_stack, body, distinct + [shared] * 10), strict=True))
    failed = {i: a for i, a in answers.items() if a[0] not in (200, 201)}
    assert not failed, list(failed.values())[:3]
    assert [answers[i][0] for i in range(20)] == [201] * 20
    assert sorted(answers[i][0] for i in range(20, 30)) == [200] * 9 + [201]
    made = {job["job_id"] for _, job in answers.values()}
    assert len(made) == 21  # one job per distinct key, one for the shared key
    assert len({answers[i][1]["job_id"] for i in range(20, 30)}) == 1
    _, after = _json(local_stack, "GET", "/jobs")
    assert {j["job_id"] for j in after["jobs"]} - {j["job_id"] for j in before["jobs"]} == made  # no phantom
    # executions come from the fan-out queue, which the bridge pumps behind every other queue: 20 jobs' worth
    # takes well over WAIT on a loaded 2-core machine, so this waits on the condition for longer
    deadline = time.monotonic() + 4 * WAIT
    while True:
        missing = {job_id: got for job_id in made if (got := _executions(local_stack, job_id)) != sorted(epns)}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not missing, f"jobs without all their executions: {missing}"


# -- a. revocation reaches a restarted broker ------------------------------------------------------------------


def _until(what: str, ready: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_a_device_deregistered_after_a_broker_restart_cannot_connect(local_stack: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    directory = Path(local_stack["directory"])
    epn = _epn("restart")
    issued = _registered_device(local_stack, tmp_path, epn)
    assert isinstance(_try_connect(local_stack, issued), Client), "the fresh certificate must connect first"
    old = mosquitto.current_pid(directory / "mosquitto")
    new = stack.restart_broker(directory)
    assert old is not None and new.pid != old and not procs.is_alive(old)
    assert mosquitto.current_pid(directory / "mosquitto") == new.pid
    assert [p["pid"] for p in stack.load(directory)["processes"] if p["name"] == "mosquitto"] == [new.pid]
    assert isinstance(_try_connect(local_stack, issued), Client), "the restarted broker must accept it"
    status, gone = _json(local_stack, "DELETE", f"/devices/{epn}")
    assert (status, gone["state"]) == (200, "DEREGISTERED")
    outcome: Client | str = "never tried"

    def refused() -> bool:
        nonlocal outcome
        outcome = _try_connect(local_stack, issued)
        return isinstance(outcome, str)

    _until("the restarted broker to refuse the revoked certificate", refused)
    # the broker still runs and still accepts everyone else
    assert procs.is_alive(new.pid)
    other = _registered_device(local_stack, tmp_path, _epn("still"))
    assert isinstance(_try_connect(local_stack, other), Client)
