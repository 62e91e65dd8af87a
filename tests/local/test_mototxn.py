"""Contract: TransactWriteItems leaves moto's tables exactly as moto does with local/mototxn.py's item snapshot.

A scenario of transactions (committed; cancelled by a condition after earlier items wrote; two items on
one key; an item with two operations after an applied one, which moto does not roll back; a validation
error inside; an unknown table; too many items) runs in moto's in-process mock twice, with
local/motoindex.py installed as in the moto server, without and with local/mototxn.py. After every
transaction its response or error and the whole state are compared: a scan of each table and every
query of tests/local/test_motoindex.py (so the GSI index must follow the rollback too). Deliberately
broken rollbacks must make the comparison fail, and the snapshot must cost the transaction's items,
not the table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from local import motoindex, mototxn
from local.motoindex import MotoInternalsChanged
from tests.local.test_motoindex import QUERIES, REGION, _create, _pages

Client = Any


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _put(table: str, item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": item, **extra}}


def _update(key: dict[str, Any], expression: str, values: dict[str, Any] | None = None, **extra: Any
            ) -> dict[str, Any]:
    update: dict[str, Any] = {"TableName": "tbl", "Key": key, "UpdateExpression": expression, **extra}
    if values:
        update["ExpressionAttributeValues"] = values
    return {"Update": update}


def _key(p: int, s: int) -> dict[str, Any]:
    return {"pk": _s(f"p{p}"), "sk": _s(f"s{s:03d}")}


ABSENT = {"ConditionExpression": "attribute_not_exists(pk)"}
TRANSACTIONS: list[list[dict[str, Any]]] = [
    [_put("tbl", {**_key(1, 200), "gpk": _s("g1"), "gsk": _n(1)}),
     _update(_key(2, 2), "SET gpk = :g", {":g": _s("g3")}),
     {"Delete": {"TableName": "tbl", "Key": _key(3, 3)}}, _update(_key(4, 201), "SET gh = :h", {":h": _s("h2")})],
    # cancelled by the last item: the put, the update (moving a GSI key) and the delete are rolled back
    [_put("tbl", {**_key(1, 202), "gpk": _s("g2"), "gsk": _n(2)}),
     _update(_key(5, 5), "SET gpk = :g, gsk = :k", {":g": _s("g0"), ":k": _n(9)}),
     {"Delete": {"TableName": "tbl", "Key": _key(6, 6)}},
     _update(_key(4, 201), "REMOVE gh"),
     _put("tbl", {**_key(1, 200)}, **ABSENT, ReturnValuesOnConditionCheckFailure="ALL_OLD")],
    [_put("hsh", {"id": _s("e01"), "st": _s("DONE")}),
     {"ConditionCheck": {"TableName": "tbl", "Key": _key(0, 0), "ConditionExpression": "attribute_exists(nope)"}}],
    [_put("tbl", {**_key(0, 203), "gpk": _s("g0")}),  # one key twice
     _update(_key(0, 203), "SET gh = :h", {":h": _s("h0")})],
    [_put("tbl", {**_key(0, 204), "gpk": _s("g1")}),
     {"Put": {"TableName": "tbl", "Item": _key(0, 205)}, "Delete": {"TableName": "tbl", "Key": _key(0, 0)}}],
    [_update(_key(1, 1), "SET gpk = :g", {":g": _s("g3")}), _update(_key(2, 9), "SET #a = :v", {":v": _s("x")})],
    [_put("tbl", {**_key(2, 206), "gpk": _s("g2")}), _put("nosuch", {"pk": _s("x"), "sk": _s("y")})],
    [_put("tbl", {**_key(3, 207 + n)}) for n in range(101)],
    [_put("tbl", {**_key(3, 310), "gpk": _s("g0")}), _update({"pk": _s("p3")}, "SET gh = :h", {":h": _s("h1")})],
    [_update(_key(5, 15), "ADD gsk :one", {":one": _n(1)}), _put("hsh", {"id": _s("e02"), "st": _s("RUN")}),
     {"Delete": {"TableName": "hsh", "Key": {"id": _s("e03")}, **{"ConditionExpression": "st = :x"},
                 "ExpressionAttributeValues": {":x": _s("never")}}}],
    [_update(_key(5, 15), "ADD gsk :one", {":one": _n(1)}), _put("hsh", {"id": _s("e04"), "st": _s("RUN")})],
]


def _state(ddb: Client) -> list[Any]:
    scans = []
    for table in ("tbl", "hsh"):
        items = ddb.scan(TableName=table)["Items"]
        scans.append(sorted(items, key=repr))
    return [scans, [_pages(ddb, q) for q in QUERIES]]


def run_scenario(patched: bool, restorer: Callable[[Any], None] = mototxn.restore) -> list[Any]:
    with mock_aws(), motoindex.installed():
        ddb = boto3.client("dynamodb", region_name=REGION)
        _create(ddb)
        for i in range(60):
            item: dict[str, Any] = {**_key(i % 7, i), "gpk": _s(f"g{i % 4}"), "gsk": _n(i % 10)}
            if i % 3:
                item["gh"] = _s(f"h{i % 3}")
            ddb.put_item(TableName="tbl", Item=item)
        for i in range(8):
            ddb.put_item(TableName="hsh", Item={"id": _s(f"e{i:02d}"), "st": _s("RUN" if i % 2 else "DONE")})
        observed: list[Any] = [_state(ddb)]
        with mototxn.installed(restorer=restorer) if patched else _nothing():
            for transaction in TRANSACTIONS:
                try:
                    answer: Any = ddb.transact_write_items(TransactItems=transaction)
                    answer.pop("ResponseMetadata", None)
                except ClientError as err:
                    answer = ("error", err.response["Error"], err.response.get("CancellationReasons"))
                observed.append([answer, _state(ddb)])
        return observed


class _nothing:  # contextlib.nullcontext, typed for the conditional `with`
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


@pytest.fixture(scope="module")
def unpatched() -> list[Any]:
    return run_scenario(False)


def test_snapshot_rollback_leaves_the_table_as_moto_does(unpatched: list[Any]) -> None:
    patched = run_scenario(True)
    assert len(patched) == len(TRANSACTIONS) + 1
    for mine, theirs in zip(patched, unpatched, strict=True):
        assert mine == theirs
    errors = [step[0][1]["Code"] for step in unpatched[1:] if isinstance(step[0], tuple)]
    assert errors.count("TransactionCanceledException") >= 3  # the scenario cancels, so rollbacks are compared
    assert "ValidationException" in errors


def _forget(_: Any) -> None:
    return None


def _no_reindex(taken: Any) -> None:
    for table, hash_key, range_key, item in taken:
        if item is not None:
            (table.items[hash_key] if table.range_key_attr else table.items)[range_key or hash_key] = item
        elif table.range_key_attr:
            table.items.get(hash_key, {}).pop(range_key, None)


@pytest.mark.parametrize("broken", [_forget, _no_reindex], ids=["no-rollback", "stale-index"])
def test_a_broken_rollback_is_caught(unpatched: list[Any], broken: Callable[[Any], None]) -> None:
    assert run_scenario(True, restorer=broken) != unpatched


def test_the_snapshot_holds_the_transaction_items_not_the_table() -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        _create(ddb)
        for i in range(50):
            ddb.put_item(TableName="tbl", Item=_key(i % 7, i))
        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]
        taken = mototxn.snapshot(backend, TRANSACTIONS[1])
        assert taken is not None
        assert len(taken) == 5
        assert [item is None for *_, item in taken] == [True, False, False, True, True]  # only s005 and s006 exist
        assert mototxn.snapshot(backend, [{"Put": {"TableName": "tbl", "Item": {"pk": _s("x")}}}]) is None


def test_install_refuses_other_moto_internals() -> None:
    mototxn.check()
    with pytest.raises(MotoInternalsChanged):
        mototxn.check({**mototxn.VERIFIED, "dynamodb/models/table.py": "0" * 16})
