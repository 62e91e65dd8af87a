"""Contract: moto's DynamoDB Query answers exactly the same with local/motoindex.py's index as without.

One scenario (tables with a sparse GSI, a hash-only GSI, an LSI; puts, updates that move or remove a
GSI key, deletes, batch writes, transactions including a cancelled one, PartiQL) runs in moto's
in-process mock twice, unpatched and patched, and every query page (items, counts, LastEvaluatedKey)
and error is compared. A deliberately broken index must make the comparison fail.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType

from local import motoindex

REGION = "eu-west-1"
Client = Any
Break = Callable[[], None]


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _create(ddb: Client) -> None:
    ddb.create_table(
        TableName="tbl",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": t}
            for n, t in [("pk", "S"), ("sk", "S"), ("gpk", "S"), ("gsk", "N"), ("gh", "S"), ("lsk", "N")]
        ],
        GlobalSecondaryIndexes=[
            {"IndexName": "gi1", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"}, {"AttributeName": "gsk", "KeyType": "RANGE"}]},
            {"IndexName": "gi2", "Projection": {"ProjectionType": "KEYS_ONLY"},
             "KeySchema": [{"AttributeName": "gh", "KeyType": "HASH"}]},
        ],
        LocalSecondaryIndexes=[
            {"IndexName": "li1", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "lsk", "KeyType": "RANGE"}]},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.create_table(
        TableName="hsh",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("id", "st")],
        GlobalSecondaryIndexes=[
            {"IndexName": "bystate", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "st", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}]},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def _item(rng: random.Random, i: int) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": _s(f"p{i % 7}"), "sk": _s(f"s{i:03d}"), "body": _s("x" * rng.randint(0, 40))}
    if rng.random() < 0.8:
        item["gpk"] = _s(f"g{rng.randint(0, 3)}")
    if rng.random() < 0.8:
        item["gsk"] = _n(rng.randint(0, 9))  # ties: order falls back to the table's keys
    if rng.random() < 0.5:
        item["gh"] = _s(f"h{rng.randint(0, 2)}")
    if rng.random() < 0.7:
        item["lsk"] = _n(rng.randint(0, 20))
    return item


QUERIES: list[dict[str, Any]] = [
    {"TableName": "tbl", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": _s("p3")}},
    {"TableName": "tbl", "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
     "ExpressionAttributeValues": {":p": _s("p1"), ":a": _s("s010"), ":b": _s("s080")}, "ScanIndexForward": False},
    {"TableName": "tbl", "KeyConditionExpression": "pk = :p AND begins_with(sk, :a)",
     "ExpressionAttributeValues": {":p": _s("p2"), ":a": _s("s0")}, "Limit": 4},
    {"TableName": "tbl", "KeyConditionExpression": "pk = :p AND sk > :a", "FilterExpression": "attribute_exists(gh)",
     "ExpressionAttributeValues": {":p": _s("p4"), ":a": _s("s020")}, "Limit": 3},
    {"TableName": "tbl", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": _s("nope")}},
    {"TableName": "tbl", "IndexName": "gi1", "KeyConditionExpression": "gpk = :g",
     "ExpressionAttributeValues": {":g": _s("g1")}},
    {"TableName": "tbl", "IndexName": "gi1", "KeyConditionExpression": "gpk = :g", "Limit": 3,
     "ExpressionAttributeValues": {":g": _s("g2")}},
    {"TableName": "tbl", "IndexName": "gi1", "KeyConditionExpression": "gpk = :g", "Limit": 2,
     "ScanIndexForward": False, "ExpressionAttributeValues": {":g": _s("g0")}},
    {"TableName": "tbl", "IndexName": "gi1", "KeyConditionExpression": "gpk = :g AND gsk >= :k",
     "ExpressionAttributeValues": {":g": _s("g3"), ":k": _n(4)}, "Limit": 5},
    {"TableName": "tbl", "IndexName": "gi1", "KeyConditionExpression": "gpk = :g AND gsk BETWEEN :a AND :b",
     "ProjectionExpression": "pk, sk, gsk", "ExpressionAttributeValues": {":g": _s("g1"), ":a": _n(2), ":b": _n(6)}},
    {"TableName": "tbl", "IndexName": "gi1", "KeyConditionExpression": "gpk = :g", "Select": "COUNT",
     "ExpressionAttributeValues": {":g": _s("g2")}},
    {"TableName": "tbl", "IndexName": "gi2", "KeyConditionExpression": "gh = :h", "Limit": 4,
     "ExpressionAttributeValues": {":h": _s("h1")}},
    {"TableName": "tbl", "IndexName": "gi2", "KeyConditionExpression": "gh = :h", "ScanIndexForward": False,
     "ExpressionAttributeValues": {":h": _s("h0")}},
    {"TableName": "tbl", "IndexName": "li1", "KeyConditionExpression": "pk = :p AND lsk < :k", "Limit": 3,
     "ExpressionAttributeValues": {":p": _s("p5"), ":k": _n(12)}},
    {"TableName": "tbl", "IndexName": "nosuch", "KeyConditionExpression": "gpk = :g",
     "ExpressionAttributeValues": {":g": _s("g1")}},
    {"TableName": "hsh", "IndexName": "bystate", "KeyConditionExpression": "st = :s", "Limit": 3,
     "ExpressionAttributeValues": {":s": _s("RUN")}},
    {"TableName": "hsh", "IndexName": "bystate", "KeyConditionExpression": "st = :s AND id > :i",
     "ExpressionAttributeValues": {":s": _s("DONE"), ":i": _s("e05")}, "ScanIndexForward": False},
    {"TableName": "hsh", "KeyConditionExpression": "id = :i", "ExpressionAttributeValues": {":i": _s("e07")}},
]


def _pages(ddb: Client, query: dict[str, Any]) -> list[Any]:
    """Every page of a query, ExclusiveStartKey from the previous page, or its error."""
    pages: list[Any] = []
    request = dict(query)
    while True:
        try:
            page = ddb.query(**request)
        except ClientError as err:
            return [*pages, ("error", err.response["Error"])]
        page.pop("ResponseMetadata", None)
        pages.append(page)
        if "LastEvaluatedKey" not in page or len(pages) > 100:
            return pages
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _snapshot(ddb: Client) -> list[Any]:
    return [_pages(ddb, q) for q in QUERIES]


def _writes(ddb: Client, rng: random.Random) -> Iterator[None]:
    """The scenario's write phases; the caller snapshots all queries after each."""
    for i in range(120):
        ddb.put_item(TableName="tbl", Item=_item(rng, i))
    for i in range(12):
        ddb.put_item(TableName="hsh", Item={"id": _s(f"e{i:02d}"), "st": _s(rng.choice(["RUN", "DONE"]))})
    ddb.put_item(TableName="hsh", Item={"id": _s("e99")})  # sparse: not in bystate
    yield
    for i in range(0, 120, 5):  # move, remove or add GSI keys in place
        key = {"pk": _s(f"p{i % 7}"), "sk": _s(f"s{i:03d}")}
        if i % 3 == 0:
            ddb.update_item(TableName="tbl", Key=key, UpdateExpression="SET gpk = :g, gsk = :k",
                            ExpressionAttributeValues={":g": _s(f"g{i % 4}"), ":k": _n(i % 10)})
        elif i % 3 == 1:
            ddb.update_item(TableName="tbl", Key=key, UpdateExpression="REMOVE gpk, gh")
        else:
            ddb.update_item(TableName="tbl", Key=key, UpdateExpression="SET gh = :h",
                            ExpressionAttributeValues={":h": _s("h1")})
    ddb.update_item(TableName="hsh", Key={"id": _s("e03")}, UpdateExpression="SET st = :s",
                    ExpressionAttributeValues={":s": _s("DONE")})
    ddb.update_item(TableName="tbl", Key={"pk": _s("p1"), "sk": _s("new")}, UpdateExpression="SET gpk = :g, gsk = :k",
                    ExpressionAttributeValues={":g": _s("g1"), ":k": _n(3)})  # update creates the item
    with pytest.raises(ClientError):
        ddb.update_item(TableName="tbl", Key={"pk": _s("p1"), "sk": _s("s001")}, UpdateExpression="SET gpk = :g",
                        ConditionExpression="attribute_not_exists(pk)", ExpressionAttributeValues={":g": _s("g0")})
    yield
    for i in range(3, 120, 9):
        ddb.delete_item(TableName="tbl", Key={"pk": _s(f"p{i % 7}"), "sk": _s(f"s{i:03d}")})
    ddb.delete_item(TableName="hsh", Key={"id": _s("e05")})
    ddb.put_item(TableName="tbl", Item={**_item(rng, 7), "gpk": _s("g2"), "gsk": _n(1)})  # replace: new GSI key
    yield
    ddb.batch_write_item(RequestItems={"tbl": [
        *({"PutRequest": {"Item": _item(rng, i)}} for i in range(120, 140)),
        *({"DeleteRequest": {"Key": {"pk": _s(f"p{i % 7}"), "sk": _s(f"s{i:03d}")}}} for i in range(1, 40, 4)),
    ]})
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": "tbl", "Item": {"pk": _s("p2"), "sk": _s("tx1"), "gpk": _s("g3"), "gsk": _n(5)}}},
        {"Update": {"TableName": "tbl", "Key": {"pk": _s("p0"), "sk": _s("s014")},
                    "UpdateExpression": "SET gpk = :g, gsk = :k",
                    "ExpressionAttributeValues": {":g": _s("g3"), ":k": _n(5)}}},
        {"Delete": {"TableName": "tbl", "Key": {"pk": _s("p2"), "sk": _s("s002")}}},
        {"Update": {"TableName": "hsh", "Key": {"id": _s("e01")}, "UpdateExpression": "REMOVE st"}},
    ])
    yield
    with pytest.raises(ClientError):  # cancelled: the first two writes are rolled back
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "tbl", "Item": {"pk": _s("p2"), "sk": _s("tx2"), "gpk": _s("g3"), "gsk": _n(5)}}},
            {"Update": {"TableName": "tbl", "Key": {"pk": _s("p3"), "sk": _s("s010")},
                        "UpdateExpression": "SET gpk = :g", "ExpressionAttributeValues": {":g": _s("g1")}}},
            {"Put": {"TableName": "hsh", "Item": {"id": _s("e00"), "st": _s("RUN")},
                     "ConditionExpression": "attribute_not_exists(id)"}},
        ])
    ddb.put_item(TableName="tbl", Item={"pk": _s("p6"), "sk": _s("after"), "gpk": _s("g3"), "gsk": _n(0)})
    ddb.execute_statement(Statement="UPDATE tbl SET gpk='g0' WHERE pk='p6' AND sk='after'")
    yield


def run_scenario(break_index: Break | None = None) -> list[Any]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        _create(ddb)
        snapshots = []
        for _ in _writes(ddb, random.Random(13)):
            snapshots.append(_snapshot(ddb))
            if break_index is not None:
                break_index()
                snapshots.append(_snapshot(ddb))
        return snapshots


def _table(name: str) -> Any:
    return dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables[name]


def _drop_one_key() -> None:
    """Break: forget one item of a gi1 partition (as a missed write would)."""
    index = _table("tbl").__dict__.get("_motoindex")
    if index is not None and index.by_attr.get("gpk"):
        keys = index.by_attr["gpk"][next(iter(sorted(index.by_attr["gpk"], key=lambda v: v.value)))]
        keys.discard(next(iter(sorted(keys, key=str))))


def _edit_in_place() -> None:
    """Break: change an item's GSI key behind the index's back (a write path the patch does not hook)."""
    for entry in _table("hsh").items.values():
        if (state := entry.attrs.get("st")) is not None and state.value == "RUN":
            entry.attrs["st"] = DynamoType(_s("DONE"))
            return


@pytest.fixture(scope="module")
def unpatched() -> list[Any]:
    return run_scenario()


def test_patched_answers_exactly_as_moto(unpatched: list[Any]) -> None:
    with motoindex.installed():
        patched = run_scenario()
    assert len(patched) == 5
    assert patched == unpatched


@pytest.mark.parametrize("broken", [_drop_one_key, _edit_in_place], ids=["missing-key", "unhooked-write"])
def test_a_broken_index_is_caught(broken: Break) -> None:
    """The comparison can fail: with the index damaged after each phase, some page differs from moto's own."""
    reference = run_scenario(broken)
    with motoindex.installed():
        damaged = run_scenario(broken)
    assert damaged != reference


def test_queries_look_only_at_the_partition() -> None:
    with motoindex.installed(), mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        _create(ddb)
        for i in range(200):
            ddb.put_item(TableName="hsh", Item={"id": _s(f"e{i:03d}"), "st": _s("RUN" if i % 50 == 0 else "DONE")})
        table = _table("hsh")
        found = motoindex.candidates(table, None, "bystate", [("st", DynamoType(_s("RUN")))])
        assert found is not None and sorted(i.attrs["id"].value for i in found) == ["e000", "e050", "e100", "e150"]
        assert len(motoindex.candidates(table, DynamoType(_s("e007")), None, None) or []) == 1


def test_install_refuses_other_moto_internals() -> None:
    assert motoindex.digests() == motoindex.VERIFIED
    motoindex.check()
    with pytest.raises(motoindex.MotoInternalsChanged):
        motoindex.check(expected={**motoindex.VERIFIED, "Table.query": "0" * 16})
