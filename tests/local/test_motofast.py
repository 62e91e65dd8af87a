"""Contract: the local moto server answers DynamoDB exactly as moto does with local/motofast.py's fast path.

A real HTTP moto server (moto's dispatcher behind local/motoserver.py's SerialDynamoDB, in a thread of
this process so a broken fast path can be injected) runs one scenario twice, with the fast path off
(moto's dispatcher and shape-walking serialiser) and on, the backends reset in between. The scenario
makes every DynamoDB call the service makes (the table provisioned by chalicelib's ensure_table, the
repository of chalicelib/adapters/dynamo/) plus raw calls covering every attribute type (binary B/BS,
numbers, sets, nested maps and lists, booleans, null), consumed capacity, projections, paging, and the
errors the service relies on (ConditionalCheckFailed with the old item, TransactionCanceled with its
reasons and item, ValidationException, ResourceNotFound). Compared per call: status, content type,
error type, CRC32 header, raw body and the parsed boto3 response (creation timestamps and table ids,
which differ between two runs, masked). In `check` mode every fast answer is also compared with the
body moto's serialiser makes from the same result object, timestamps included. Deliberately broken
fast paths must make the comparison fail.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from chalicelib.adapters.dynamo import DynamoRepository
from chalicelib.adapters.provision import ensure_table
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.domain.models import Device, Execution, Job
from local import motofast
from local.motoindex import MotoInternalsChanged
from local.motoserver import SerialDynamoDB

TABLE = "ota-fast"
Encode = Callable[[Any, Any, Any], Any]


class Server:
    def __init__(self) -> None:
        self.front = motofast.FastDynamoDB(DomainDispatcherApplication(create_backend_app), enabled=False)
        self._server = make_server("127.0.0.1", 0, SerialDynamoDB(self.front), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    started = Server()
    yield started
    started.reset()
    started.stop()


def _client(url: str, calls: list[dict[str, Any]]) -> Any:
    client = boto3.client("dynamodb", endpoint_url=url, region_name="eu-west-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))

    def raw(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        headers = response_dict["headers"]
        calls.append({"op": operation_model.name, "status": response_dict["status_code"],
                      "type": headers.get("Content-Type"), "error": headers.get("X-Amzn-Errortype"),
                      "crc": headers.get("x-amz-crc32"), "body": bytes(response_dict["body"])})

    client.meta.events.register("before-parse.dynamodb", raw)
    return client


def _s(v: str) -> dict[str, str]:
    return {"S": v}


def _n(v: str) -> dict[str, str]:
    return {"N": v}


RICH = {
    "pk": _s("RICH#1"), "sk": _s("RICH"),
    "bin": {"B": bytes(range(256))}, "empty": {"B": b""}, "bins": {"BS": [b"\x00\xff", b"+/=", b"\xfb\xff"]},
    "int": _n("42"), "neg": _n("-0.000123"), "big": _n("123456789012345678901234567890"), "exp": _n("1E+3"),
    "ss": {"SS": ["a", "é", "\u2603"]}, "ns": {"NS": ["1", "2.5", "-3"]}, "t": {"BOOL": True}, "f": {"BOOL": False},
    "nul": {"NULL": True}, "text": _s('quote " backslash \\ newline \n tab \t nul-ish \u0001 emoji \U0001f600'),
    "m": {"M": {"x": _s("1"), "deep": {"M": {"l": {"L": [_n("1"), {"B": b"\x01\x02"}, {"M": {}}, {"L": []}]}}}}},
    "l": {"L": [_s(""), {"NULL": True}, {"BOOL": False}, {"SS": ["z"]}]},
}


def _device(n: int) -> Device:
    return Device(epn=f"dev-{n:03d}", model="m1", state="REGISTERED", token_sha256="0" * 64, token_expires=1.5,
                  created_at=1000.0 + n, apps={"fw": "1.0.0"})


def _execution(n: int, state: str = "QUEUED") -> Execution:
    return Execution(execution_id=f"job-1-{n:03d}", job_id="job-1", epn=f"dev-{n:03d}", state=state, stream=n,
                     mode="block", created_at=2000.0 + n, last_activity=2000.0 + n)


def _job() -> Job:
    return Job(job_id="job-1", upload_id="up-1", mode="block", block_size=4096, window=32, stall_seconds=120,
               total_seconds=3600, targets=(), target_spec={"model": "m1"}, state="ACTIVE", created_at=3000.0,
               app="fw", app_version="2.0.0", package_size=1000, package_sha256="s" * 64, repository_key="k",
               block_count=1, idempotency_key="idem-1")


def _expect_error(code: str, call: Callable[[], Any]) -> dict[str, Any]:
    """The ClientError a call raised, directly or as the cause of the repository's domain error."""
    with pytest.raises(Exception) as caught:
        call()
    error: BaseException | None = caught.value
    while error is not None and not isinstance(error, ClientError):
        error = error.__cause__
    assert isinstance(error, ClientError)
    assert error.response["Error"]["Code"] == code
    return dict(error.response)


def scenario(db: Any) -> list[Any]:
    """Every call the service makes, and the edge cases of the wire format; returns what boto3 parsed."""
    out: list[Any] = []
    ensure_table(db, TABLE)  # DescribeTable (ResourceNotFound), CreateTable, DescribeTable (waiter)
    out.append(db.describe_table(TableName=TABLE))
    out.append(db.update_table(TableName=TABLE, AttributeDefinitions=[{"AttributeName": "x", "AttributeType": "S"}],
                               GlobalSecondaryIndexUpdates=[{"Create": {
                                   "IndexName": "gsix", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                   "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}]}}]))
    out.append(db.list_tables())
    repo = DynamoRepository(db, TABLE)
    for n in range(30):
        repo.create_device(_device(n))
    out.append(_expect_error("ConditionalCheckFailedException", lambda: repo.create_device(_device(0))))
    repo.save_device(replace(_device(1), version=2, agent_version="2.0"))
    with pytest.raises(ConcurrentUpdate) as stale:
        repo.save_device(replace(_device(1), version=2))
    out.append(stale.value.current)
    out.append(repo.create_job(_job(), [_execution(n) for n in range(25)]))
    out.append(repo.create_job(replace(_job(), job_id="job-2"), []))  # the idempotency key: TransactionCanceled
    out.append(repo.create_execution(_execution(3)))  # exists: cancelled, reasons ConditionalCheckFailed
    for n in range(0, 25, 2):
        repo.save_execution(replace(_execution(n, "IN_PROGRESS"), version=2))
    with pytest.raises(ConcurrentUpdate):
        repo.save_execution(replace(_execution(0, "SUCCEEDED"), version=2))
    out += [repo.job_counts("job-1"), repo.list_job_executions("job-1"), repo.list_active_executions(),
            repo.list_active_jobs(), repo.list_devices("m1"), repo.get_devices([f"dev-{n:03d}" for n in range(35)]),
            repo.job_executions_page("job-1", 7, None), repo.devices_page("m1", 4, None),
            repo.list_device_executions("dev-004"), repo.get_execution("job-1-999"), repo.delete_key("nokey")]
    page = repo.job_executions_page("job-1", 10, None)
    out.append(repo.job_executions_page("job-1", 10, page.next_cursor))
    repo.put_job_targets("job-1", [["a", "b"], ["c"]])
    out.append(repo.get_job_targets("job-1", 1))
    # raw calls: every attribute type, return values, consumed capacity
    out.append(db.put_item(TableName=TABLE, Item=RICH, ReturnConsumedCapacity="TOTAL"))
    out.append(db.put_item(TableName=TABLE, Item={**RICH, "int": _n("43")}, ReturnValues="ALL_OLD",
                           ReturnConsumedCapacity="INDEXES", ReturnItemCollectionMetrics="SIZE"))
    out.append(db.get_item(TableName=TABLE, Key={"pk": _s("RICH#1"), "sk": _s("RICH")}))
    out.append(db.get_item(TableName=TABLE, Key={"pk": _s("RICH#1"), "sk": _s("RICH")},
                           ProjectionExpression="#b, m.deep, l[1], bins", ExpressionAttributeNames={"#b": "bin"}))
    out.append(db.update_item(TableName=TABLE, Key={"pk": _s("RICH#1"), "sk": _s("RICH")},
                              UpdateExpression="ADD #i :one SET newb = :b", ExpressionAttributeNames={"#i": "int"},
                              ExpressionAttributeValues={":one": _n("1"), ":b": {"B": b"\xfe"}},
                              ReturnValues="UPDATED_NEW"))
    out.append(db.update_item(TableName=TABLE, Key={"pk": _s("RICH#1"), "sk": _s("RICH")},
                              UpdateExpression="REMOVE nul", ReturnValues="ALL_NEW"))
    out.append(_expect_error("ConditionalCheckFailedException", lambda: db.put_item(
        TableName=TABLE, Item={"pk": _s("RICH#1"), "sk": _s("RICH")}, ConditionExpression="attribute_not_exists(pk)",
        ReturnValuesOnConditionCheckFailure="ALL_OLD")))
    out.append(_expect_error("ConditionalCheckFailedException", lambda: db.update_item(
        TableName=TABLE, Key={"pk": _s("RICH#1"), "sk": _s("RICH")}, UpdateExpression="SET a = :a",
        ConditionExpression="attribute_not_exists(pk)", ExpressionAttributeValues={":a": _s("a")},
        ReturnValuesOnConditionCheckFailure="ALL_OLD")))
    out.append(_expect_error("TransactionCanceledException", lambda: db.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {"pk": _s("NEW#1"), "sk": _s("NEW")}}},
        {"Put": {"TableName": TABLE, "Item": {"pk": _s("RICH#1"), "sk": _s("RICH")},
                 "ConditionExpression": "attribute_not_exists(pk)", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
    ])))
    out.append(db.get_item(TableName=TABLE, Key={"pk": _s("NEW#1"), "sk": _s("NEW")}))  # rolled back
    out.append(_expect_error("ValidationException", lambda: db.get_item(
        TableName=TABLE, Key={"pk": _s("1")})))
    out.append(_expect_error("ValidationException", lambda: db.query(
        TableName=TABLE, KeyConditionExpression="nope = :v", ExpressionAttributeValues={":v": _s("x")})))
    out.append(_expect_error("ResourceNotFoundException", lambda: db.get_item(
        TableName="missing", Key={"pk": _s("x"), "sk": _s("y")})))
    out.append(db.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {"pk": _s("NEW#2"), "sk": _s("NEW"), "b": {"B": b"\x00"}}}},
        {"Update": {"TableName": TABLE, "Key": {"pk": _s("RICH#1"), "sk": _s("RICH")},
                    "UpdateExpression": "SET c = :c", "ExpressionAttributeValues": {":c": {"BS": [b"\x09"]}}}},
        {"Delete": {"TableName": TABLE, "Key": {"pk": _s("DEV#dev-029"), "sk": _s("DEV")}}},
        {"ConditionCheck": {"TableName": TABLE, "Key": {"pk": _s("DEV#dev-028"), "sk": _s("DEV")},
                            "ConditionExpression": "attribute_exists(pk)"}},
    ], ReturnConsumedCapacity="TOTAL"))
    out.append(db.transact_get_items(TransactItems=[
        {"Get": {"TableName": TABLE, "Key": {"pk": _s("RICH#1"), "sk": _s("RICH")}}},
        {"Get": {"TableName": TABLE, "Key": {"pk": _s("NONE"), "sk": _s("NONE")}}}]))
    out.append(db.batch_write_item(RequestItems={TABLE: [
        {"PutRequest": {"Item": {"pk": _s(f"BW#{n}"), "sk": _s("BW"), "gsi1pk": _s("BW"), "gsi1sk": _s(f"{n:02d}"),
                                 "v": {"B": bytes([n])}}}} for n in range(20)]
        + [{"DeleteRequest": {"Key": {"pk": _s("NEW#2"), "sk": _s("NEW")}}}]}, ReturnConsumedCapacity="TOTAL"))
    keys = [{"pk": _s(f"BW#{n}"), "sk": _s("BW")} for n in range(22)]
    out.append(db.batch_get_item(RequestItems={TABLE: {"Keys": keys, "ProjectionExpression": "pk, v"}},
                                 ReturnConsumedCapacity="TOTAL"))
    for forward in (True, False):
        out.append(db.query(TableName=TABLE, IndexName="gsi1", KeyConditionExpression="gsi1pk = :v AND gsi1sk > :s",
                            ExpressionAttributeValues={":v": _s("BW"), ":s": _s("03"), ":b": {"B": bytes([9])}},
                            FilterExpression="v <> :b", Limit=6, ScanIndexForward=forward,
                            ReturnConsumedCapacity="INDEXES"))
    out.append(db.query(TableName=TABLE, IndexName="gsi1", KeyConditionExpression="gsi1pk = :v",
                        ExpressionAttributeValues={":v": _s("BW")}, Select="COUNT"))
    out.append(db.scan(TableName=TABLE, Limit=15))
    out.append(db.delete_item(TableName=TABLE, Key={"pk": _s("RICH#1"), "sk": _s("RICH")}, ReturnValues="ALL_OLD"))
    out.append(db.delete_item(TableName=TABLE, Key={"pk": _s("RICH#1"), "sk": _s("RICH")}, ReturnValues="ALL_OLD"))
    out.append(db.update_time_to_live(TableName=TABLE, TimeToLiveSpecification={"Enabled": True,
                                                                                 "AttributeName": "expires_at"}))
    out.append(db.describe_time_to_live(TableName=TABLE))
    out.append(db.describe_table(TableName=TABLE))
    return out


MASKED = re.compile(rb'("(?:CreationDateTime|TableId|LastUpdateToPayPerRequestDateTime)": )("[^"]*"|[0-9.]+)')


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<masked>" if k in ("TableId", "ResponseMetadata") else _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, datetime):
        return "<datetime>"
    return value


def run(server: Server, fast: bool, encoder: Encode = motofast.encode, mode: str = "on"
        ) -> tuple[list[dict[str, Any]], list[Any], motofast.Mismatch, int]:
    server.reset()
    calls: list[dict[str, Any]] = []
    served: list[int] = []

    def counting(handler: Any, result: Any, operation: Any) -> Any:
        answer = encoder(handler, result, operation)
        served.append(answer is not None)
        return answer

    server.front.enabled = fast
    with motofast.installed(mode=mode, encoder=counting) as mismatches:
        parsed = scenario(_client(server.url, calls))
    server.front.enabled = False
    for call in calls:
        masked = MASKED.sub(rb"\1<masked>", call["body"])
        if masked != call["body"]:
            call["crc"] = "<masked>"
        call["body"] = masked
    return calls, _masked(parsed), mismatches, sum(served)


@pytest.fixture(scope="module")
def reference(server: Server) -> tuple[list[dict[str, Any]], list[Any]]:
    calls, parsed, _, fast = run(server, fast=False)
    assert fast == 0
    return calls, parsed


def test_fast_path_answers_byte_for_byte_as_moto(server: Server, reference: Any) -> None:
    calls, parsed, mismatches, fast = run(server, fast=True)
    assert not mismatches
    assert [c["op"] for c in calls] == [c["op"] for c in reference[0]]
    for mine, theirs in zip(calls, reference[0], strict=True):
        assert mine == theirs
    assert parsed == reference[1]
    assert server.front.fast >= len(calls)
    # the fast serialiser answered every successful call (errors and TTL's empty results are moto's)
    assert fast >= sum(c["status"] == 200 for c in calls) - 2
    ops = {c["op"] for c in calls}
    assert {"Query", "GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem", "BatchWriteItem",
            "TransactWriteItems", "TransactGetItems", "DescribeTable", "CreateTable", "Scan"} <= ops
    errors = {c["error"].split("#")[-1] for c in calls if c["status"] != 200}
    assert {"ConditionalCheckFailedException", "TransactionCanceledException", "ValidationException",
            "ResourceNotFoundException"} <= errors
    cancelled = [json.loads(c["body"]) for c in calls if c["error"] == "TransactionCanceledException"]
    assert any(r.get("Item") for body in cancelled for r in body["CancellationReasons"])
    failed = [json.loads(c["body"]) for c in calls if c["error"] == "ConditionalCheckFailedException"]
    assert any("bin" in body.get("Item", {}) for body in failed)


def test_check_mode_finds_every_fast_body_equal_to_moto_serialiser(server: Server) -> None:
    _, _, mismatches, fast = run(server, fast=True, mode="check")
    assert fast > 50
    assert mismatches == []


def _sorted_keys(handler: Any, result: Any, operation: Any) -> Any:
    answer = motofast.encode(handler, result, operation)
    return None if answer is None else (answer[0], answer[1], json.dumps(json.loads(answer[2]), sort_keys=True))


def _numbers_as_json_numbers(handler: Any, result: Any, operation: Any) -> Any:
    answer = motofast.encode(handler, result, operation)
    return None if answer is None else (answer[0], answer[1], re.sub(r'"N": "(-?[0-9]+)"', r'"N": \1', answer[2]))


def _unpadded_binary(handler: Any, result: Any, operation: Any) -> Any:
    answer = motofast.encode(handler, result, operation)
    return None if answer is None else (answer[0], answer[1], re.sub(r'("B": "[^"]*?)=+"', r'\1"', answer[2]))


def _no_consumed_capacity(handler: Any, result: Any, operation: Any) -> Any:
    answer = motofast.encode(handler, result, operation)
    if answer is None:
        return None
    body = json.loads(answer[2])
    body.pop("ConsumedCapacity", None)
    return answer[0], answer[1], json.dumps(body)


@pytest.mark.parametrize("broken", [_sorted_keys, _numbers_as_json_numbers, _unpadded_binary, _no_consumed_capacity],
                         ids=["key-order", "numbers", "binary", "dropped-member"])
def test_a_broken_fast_path_is_caught(server: Server, reference: Any, broken: Encode) -> None:
    try:
        calls, parsed, _, _ = run(server, fast=True, encoder=broken)
    except Exception:
        pass
    else:
        assert (calls, parsed) != reference
    _, _, mismatches, _ = run(server, fast=True, encoder=broken, mode="check")  # moto's bodies went out
    assert mismatches


@pytest.mark.parametrize("environ, routed", [
    ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Query",
      "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/dynamodb/aws4_request, X"}, True),
    ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Query"}, False),  # unsigned: the dispatcher decides
    ({"HTTP_X_AMZ_TARGET": "DynamoDBStreams_20120810.GetRecords",
      "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/dynamodb/aws4_request, X"}, False),
    ({"HTTP_X_AMZ_TARGET": "DynamoDB_20111205.Query",
      "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/dynamodb/aws4_request, X"}, False),
    ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Query",
      "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/sqs/aws4_request, X"}, False),
    ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Query", "PATH_INFO": "/moto-api/reset",
      "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/dynamodb/aws4_request, X"}, False),
])
def test_only_signed_dynamodb_requests_skip_the_dispatcher(environ: dict[str, str], routed: bool) -> None:
    assert motofast.is_dynamodb({"PATH_INFO": "/", **environ}) is routed


def test_binary_values_round_trip_through_boto3(server: Server) -> None:
    _, parsed, _, _ = run(server, fast=True)
    rich = next(p for p in parsed if isinstance(p, dict) and "Item" in p and "bin" in p["Item"])
    assert rich["Item"]["bin"]["B"] == bytes(range(256))
    assert base64.b64encode(rich["Item"]["bins"]["BS"][0]) == b"AP8="


def test_install_refuses_other_moto_internals() -> None:
    motofast.check()  # the installed moto is the verified one
    with pytest.raises(MotoInternalsChanged):
        motofast.check({**motofast.VERIFIED, "core/serialize.py": "0" * 16})
