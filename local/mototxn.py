"""Make moto's TransactWriteItems cost O(items of the transaction) instead of O(table), for the local moto server.

moto 5.2.5 (`DynamoDBBackend.transact_write_items`, moto/dynamodb/models/__init__.py) takes a deep copy
of the whole table for every item of every transaction, to put back if the transaction is cancelled.
The service creates each execution with a two-item transaction (the execution and its job's counters,
chalicelib/adapters/dynamo/), so a fan-out to N devices cost O(N x table) under the moto server's
DynamoDB lock: 27 transactions a second with 600 items in the table, and it falls with every item added
(bench/README.md, Fleet).

What this module does: `install()` wraps moto's function so that, when every item of the transaction
names its full primary key (the service's always do), it first deep-copies only the items the
transaction can touch (a Put's key from its item, the others' `Key`; absent ones recorded as absent),
lets moto's own code run with the whole-table copy replaced by the table itself (a `Table.__deepcopy__`
that returns the table, only inside this wrapper and only on this thread), and when moto would have put
its copies back (TransactionCanceled, or a validation error raised inside its loop) puts back those
items instead: the table ends exactly as moto leaves it, since a transaction writes nothing but the items
at those keys. local/motoindex.py's GSI index is told of every restored key. Everything else - the
checks, the order, the errors, the cancellation reasons - is moto's code, unchanged. A transaction it
cannot reason about (a key it cannot read, a table with a stream, whose records a rollback would also
remove) runs moto's function as it is, whole-table copy included.

Does not: touch anything outside the moto server process (local/motoserver.py installs it; tests use
`installed()`), nor other operations. moto's internals are not an API: `install()` checks the version
and a digest of the moto files it relies on, and raises MotoInternalsChanged if they changed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from local import motoindex
from local.motoindex import MotoInternalsChanged, require_verified

VERIFIED_VERSION = "5.2.5"
VERIFIED: dict[str, str] = {
    "dynamodb/models/__init__.py": "deee8b9c59bc8a4b",
    "dynamodb/models/table.py": "3fecc9e51039f5a1",
    "dynamodb/exceptions.py": "25b24b23db9fa47e",
}
_local = threading.local()
_installed: dict[str, Callable[..., Any]] = {}
Snapshot = list[tuple[Any, Any, Any, Any]]  # (table, hash DynamoType, range DynamoType | None, item copy | None)


def digests() -> dict[str, str]:
    import moto

    root = Path(moto.__file__).resolve().parent
    try:
        return {name: hashlib.sha256((root / name).read_bytes()).hexdigest()[:16] for name in VERIFIED}
    except OSError as err:
        raise MotoInternalsChanged(f"moto files moved: local/mototxn.py must be re-verified ({err})") from err


def check(expected: dict[str, str] | None = None) -> None:
    """Raise MotoInternalsChanged unless the installed moto is the verified one (or has the `expected` digests)."""
    require_verified("mototxn", VERIFIED_VERSION, VERIFIED if expected is None else expected, digests())


def _stored(table: Any, hash_key: Any, range_key: Any) -> Any:
    entry = table.items.get(hash_key)  # .get: never create defaultdict entries
    if entry is None:
        return None
    return entry.get(range_key) if table.range_key_attr else entry


def snapshot(backend: Any, transact_items: Any) -> Snapshot | None:
    """Copies of the items the transaction can write, or None when it cannot be told (moto's own copy then)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    taken: Snapshot = []
    seen: set[tuple[int, Any, Any]] = set()
    try:
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue  # moto answers ResourceNotFound for it; nothing of it is written
            if table.stream_shard is not None:
                return None
            attrs = op["Item"] if op_type == "Put" else op["Key"]
            names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
            if not all(name in attrs for name in names):
                return None
            hash_key = DynamoType(attrs[table.hash_key_attr])
            range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
            if (id(table), hash_key, range_key) not in seen:
                seen.add((id(table), hash_key, range_key))
                taken.append((table, hash_key, range_key, copy.deepcopy(_stored(table, hash_key, range_key))))
    except Exception:
        return None
    return taken


def restore(taken: Snapshot) -> None:
    for table, hash_key, range_key, item in reversed(taken):
        if table.range_key_attr:
            if item is None:
                partition = table.items.get(hash_key)
                if partition is not None:
                    partition.pop(range_key, None)
            else:
                table.items[hash_key][range_key] = item
        elif item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        motoindex.reindex(table, (hash_key, range_key))


def install(*, verify: bool = True, restorer: Callable[[Snapshot], None] = restore) -> None:
    """Patch DynamoDBBackend.transact_write_items in this process (idempotent)."""
    if verify:
        check()
    if _installed:
        return
    from moto.dynamodb.exceptions import (
        MockValidationException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    if "__deepcopy__" in Table.__dict__:
        raise MotoInternalsChanged("moto's Table has its own __deepcopy__: local/mototxn.py must be re-verified")
    original = DynamoDBBackend.transact_write_items

    def table_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
        if getattr(_local, "journal", False):
            memo[id(self)] = self
            return self
        reduced = self.__reduce_ex__(4)  # what copy.deepcopy does for an object without __deepcopy__
        return copy._reconstruct(self, memo, *reduced)  # type: ignore[attr-defined]

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        taken = snapshot(self, transact_items)
        if taken is None:
            return original(self, transact_items)
        _local.journal = True
        try:
            return original(self, transact_items)
        except TransactWriteSingleOpException:
            raise  # raised outside moto's try: moto keeps what the earlier items wrote
        except (MockValidationException, TransactionCanceledException):
            restorer(taken)  # where moto puts its whole-table copies back
            raise
        finally:
            _local.journal = False

    Table.__deepcopy__ = table_deepcopy  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _installed["transact_write_items"] = original


def uninstall() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original = _installed.pop("transact_write_items", None)
    if original is not None:
        DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]
        del Table.__deepcopy__  # type: ignore[attr-defined]


@contextlib.contextmanager
def installed(*, verify: bool = True, restorer: Callable[[Snapshot], None] = restore) -> Iterator[None]:
    install(verify=verify, restorer=restorer)
    try:
        yield
    finally:
        uninstall()
