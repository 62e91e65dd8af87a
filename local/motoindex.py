"""Make moto's DynamoDB Query cost O(items of the partition) instead of O(table), for the local moto server.

moto 5.2.5 answers every Query (`Table.query`, moto/dynamodb/models/table.py) by walking and sorting
every item of the table (`self.all_items()`), then keeping those of the queried partition: at fleet
scale (10,000+ devices and executions) each query costs tens of milliseconds under the moto server's
DynamoDB lock (local/motoserver.py), and the local stack collapses where real DynamoDB would not.

What this module does: `install()` patches moto's classes so that, during a query, `all_items()`
returns only the candidate items of the queried partition: for the table (and local secondary
indexes) `table.items[hash]`, moto's own storage; for a global secondary index, an index kept on the
table from the value of the GSI's (first) partition-key attribute to the primary keys of the items
holding it. Everything else stays moto's own code: the partition check, sparse-index and range-key
conditions, sort, ScanIndexForward, ExclusiveStartKey, Limit, the 1 MB page, projections and filters.
The index is a superset guard: an item is listed under the values it held at its last write and moto
re-checks the attribute, so only a missed write could make a result wrong. Writes reach the index from
`Table.put_item` and `Table.delete_item` (PutItem, BatchWriteItem, transactions and PartiQL all end
there) and from the backend's `update_item` (which edits the stored item in place). The index lives on
the Table object, so the whole-table deep copy a transaction takes for its rollback copies it with the
items; a table whose items dict was replaced (restore from backup) or a GSI queried for the first time
gets its index built by one walk of the table.

What it does not do: Scan (still a walk, as in DynamoDB), multi-attribute GSI partition keys beyond
the first attribute (moto filters the rest), anything outside the moto server process: `install()` is
called by local/motoserver.py only; tests use `installed()` to apply and undo it.

moto's internals are not an API: `install()` checks the version and a digest of the source of every
patched function, and raises `MotoInternalsChanged` at start if they differ from the ones verified by
tests/local/test_motoindex.py (after an upgrade: run that test, then update `VERIFIED`).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

VERIFIED_VERSION = "5.2.5"
# sha256 (first 16 hex) of inspect.getsource of each patched function, for VERIFIED_VERSION.
VERIFIED: dict[str, str] = {
    "Table.query": "002b4d00be6df07c",
    "Table.all_items": "c80d2ee3c896acd0",
    "Table.put_item": "de23933013ef8426",
    "Table.delete_item": "1594f7b07616c8cb",
    "DynamoDBBackend.update_item": "218984588dd689a5",
}

PKey = tuple[Any, Any]  # (hash DynamoType, range DynamoType | None)
_ATTR = "_motoindex"
_local = threading.local()
_installed: dict[str, Callable[..., Any]] = {}
_epoch = [0]  # bumped by every install(): indexes built under an earlier install may have missed writes


class MotoInternalsChanged(RuntimeError):
    """The installed moto is not the one this patch was verified against."""


class _Index:
    """Per table: GSI partition attribute -> value -> primary keys, and the reverse (key -> indexed values)."""

    def __init__(self, items: Any) -> None:
        self.items = items  # identity of the table's storage this index describes
        self.epoch = _epoch[0]
        self.by_attr: dict[str, dict[Any, set[PKey]]] = {}
        self.held: dict[PKey, dict[str, Any]] = {}

    def add_attr(self, table: Any, attr: str) -> None:
        values: dict[Any, set[PKey]] = {}
        self.by_attr[attr] = values
        for item in _stored(table):
            value = item.attrs.get(attr)
            if value is not None:
                key = (item.hash_key, item.range_key)
                values.setdefault(value, set()).add(key)
                self.held.setdefault(key, {})[attr] = value

    def reindex(self, table: Any, key: PKey) -> None:
        for attr, value in self.held.pop(key, {}).items():
            keys = self.by_attr[attr].get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_attr[attr][value]
        item = _lookup(table, key)
        if item is None:
            return
        held = {}
        for attr, values in self.by_attr.items():
            value = item.attrs.get(attr)
            if value is not None:
                values.setdefault(value, set()).add(key)
                held[attr] = value
        if held:
            self.held[key] = held


def _stored(table: Any) -> Iterator[Any]:
    for entry in list(table.items.values()):
        if table.range_key_attr:
            yield from list(entry.values())
        else:
            yield entry


def _lookup(table: Any, key: PKey) -> Any:
    entry = table.items.get(key[0])  # .get: never create defaultdict entries
    if entry is None:
        return None
    if table.range_key_attr:
        return entry.get(key[1]) if key[1] is not None else None
    return entry


def _partition(table: Any, hash_value: Any) -> list[Any]:
    entry = table.items.get(hash_value)
    if entry is None:
        return []
    return list(entry.values()) if table.range_key_attr else [entry]


def _index(table: Any) -> _Index:
    index = table.__dict__.get(_ATTR)
    if index is None or index.items is not table.items or index.epoch != _epoch[0]:
        index = _Index(table.items)
        setattr(table, _ATTR, index)
    return index


def _reindex(table: Any, key: PKey) -> None:
    index = table.__dict__.get(_ATTR)
    if index is not None and index.items is table.items and index.epoch == _epoch[0]:
        index.reindex(table, key)


def reindex(table: Any, key: PKey) -> None:
    """Tell the table's index (if any) that the item at `key` was put back behind moto's write paths
    (local/mototxn.py's rollback of a cancelled transaction)."""
    _reindex(table, key)


def candidates(table: Any, hash_key: Any, index_name: str | None, hash_conditions: Any) -> list[Any] | None:
    """The items moto's query has to look at, or None when this patch cannot tell (moto then walks the table)."""
    if not index_name:
        return None if hash_key is None else _partition(table, hash_key)
    index = next((i for i in table.all_indexes() if i.name == index_name), None)
    if index is None:
        return None  # moto raises its own error
    hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    wanted = dict(hash_conditions or [])
    if not hashes or hashes[0] not in wanted:
        return None
    attr, value = hashes[0], wanted[hashes[0]]
    if attr == table.hash_key_attr:
        return _partition(table, value)
    tindex = _index(table)
    if attr not in tindex.by_attr:
        tindex.add_attr(table, attr)
    return [item for key in tindex.by_attr[attr].get(value, ()) if (item := _lookup(table, key)) is not None]


def _sort_like_all_items(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _targets() -> dict[str, tuple[Any, str]]:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    return {
        "Table.query": (Table, "query"),
        "Table.all_items": (Table, "all_items"),
        "Table.put_item": (Table, "put_item"),
        "Table.delete_item": (Table, "delete_item"),
        "DynamoDBBackend.update_item": (DynamoDBBackend, "update_item"),
    }


def digests() -> dict[str, str]:
    """Digest of the installed moto's source of every function this module patches."""
    out = {}
    for name, (cls, attr) in _targets().items():
        function = _installed.get(name) or getattr(cls, attr, None)
        if function is None:
            raise MotoInternalsChanged(f"moto has no {name}: local/motoindex.py must be re-verified")
        out[name] = hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]
    return out


def check(expected: dict[str, str] | None = None) -> None:
    """Raise MotoInternalsChanged unless the installed moto is the verified one (or has the `expected` digests)."""
    require_verified("motoindex", VERIFIED_VERSION, VERIFIED if expected is None else expected, digests())


def require_verified(patch: str, version: str, expected: dict[str, str], found: dict[str, str]) -> None:
    """Raise MotoInternalsChanged unless moto is `version` and the digests `found` of what local/`patch`.py
    relies on are the `expected` ones (each local patch of moto checks itself through this)."""
    import moto

    if moto.__version__ != version or found != expected:
        changed = sorted(k for k in found if found[k] != expected.get(k))
        raise MotoInternalsChanged(
            f"moto {moto.__version__} (verified: {version}) changed {changed}: run"
            f" tests/local/test_{patch}.py against it, then update VERIFIED in local/{patch}.py"
        )


def install(*, verify: bool = True) -> None:
    """Patch moto's Table and DynamoDBBackend in this process (idempotent)."""
    if verify:
        check()
    if _installed:
        return
    _epoch[0] += 1
    targets = _targets()
    original = {name: getattr(cls, attr) for name, (cls, attr) in targets.items()}
    query, all_items = original["Table.query"], original["Table.all_items"]
    put_item, delete_item = original["Table.put_item"], original["Table.delete_item"]
    update_item = original["DynamoDBBackend.update_item"]

    def patched_all_items(self: Any) -> list[Any]:
        override = getattr(_local, "override", None)
        if override is not None and override[0] is self:
            return list(override[1])
        return all_items(self)

    def patched_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        found = candidates(self, hash_key, index_name, kwargs.get("hash_key_conditions"))
        if found is None:
            return query(self, hash_key, *args, **kwargs)
        previous = getattr(_local, "override", None)
        _local.override = (self, _sort_like_all_items(found))
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _local.override = previous

    def patched_put_item(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return put_item(self, item_attrs, *args, **kwargs)
        finally:
            with contextlib.suppress(Exception):  # no key, bad type: moto raised before writing
                from moto.dynamodb.models.dynamo_type import DynamoType

                rng = DynamoType(item_attrs[self.range_key_attr]) if self.range_key_attr else None
                _reindex(self, (DynamoType(item_attrs[self.hash_key_attr]), rng))

    def patched_delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        try:
            return delete_item(self, hash_key, range_key)
        finally:
            _reindex(self, (hash_key, range_key if self.range_key_attr else None))

    def patched_update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return update_item(self, table_name, key, *args, **kwargs)
        finally:
            with contextlib.suppress(Exception):  # no such table or malformed key: nothing was written
                table = self.get_table(table_name)
                _reindex(table, self.get_keys_value(table, key))

    replacement = {
        "Table.query": patched_query,
        "Table.all_items": patched_all_items,
        "Table.put_item": patched_put_item,
        "Table.delete_item": patched_delete_item,
        "DynamoDBBackend.update_item": patched_update_item,
    }
    for name, (cls, attr) in targets.items():
        setattr(cls, attr, replacement[name])
    _installed.update(original)


def uninstall() -> None:
    """Restore moto's own functions (tests); indexes left on tables are ignored by moto."""
    for name, (cls, attr) in _targets().items():
        if name in _installed:
            setattr(cls, attr, _installed[name])
    _installed.clear()


@contextlib.contextmanager
def installed(*, verify: bool = True) -> Iterator[None]:
    """Apply the patch for the duration of a block (tests compare patched and unpatched moto)."""
    install(verify=verify)
    try:
        yield
    finally:
        uninstall()
