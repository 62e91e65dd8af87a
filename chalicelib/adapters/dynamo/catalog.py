"""Devices, publisher keys, packages and releases in the table. Does not: business rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...domain.models import Device, Package, PublisherKey, Release
from ...domain.ports import Page
from ..paging import MODEL_SHARDS, decode, encode, refused
from .keys import load
from .store import Store


class Catalog(Store):
    def create_device(self, device: Device) -> None:
        self._create(device)

    def get_device(self, epn: str) -> Device | None:
        return self._get(Device, epn)

    def save_device(self, device: Device) -> None:
        self._save(device)

    def list_devices(self, model: str | None = None) -> list[Device]:
        if model is None:
            return self._list(Device, "gsi1", "gsi1pk", "DEVICES")
        return [d for shard in range(MODEL_SHARDS)
                for d in self._list(Device, "gsi2", "gsi2pk", f"MODEL#{model}#{shard}")]

    def devices_page(self, model: str | None, limit: int, cursor: str | None) -> Page[Device]:
        if model is None:
            return self._page(Device, "gsi1", "DEVICES", limit, cursor)
        names = {"pk", "sk", "gsi2pk", "gsi2sk", "shard"}
        shard, start = 0, None
        if cursor is not None:
            position = decode(cursor, names)
            shard = int(position.pop("shard")) if position["shard"] in {str(n) for n in range(MODEL_SHARDS)} else -1
            if shard < 0 or position["gsi2pk"] not in ("", f"MODEL#{model}#{shard}"):
                raise refused()  # a cursor of another listing
            start = position if position["pk"] else None
        found: list[dict[str, Any]] = []
        while shard < MODEL_SHARDS:
            need = limit - len(found)
            items, more = self._raw_page("gsi2", f"MODEL#{model}#{shard}", max(need, 1), start)
            if need == 0:  # the page is full: only asking whether anything follows
                if items:
                    empty = dict.fromkeys(("pk", "sk", "gsi2pk", "gsi2sk"), "")
                    return Page(tuple(load(Device, i) for i in found), encode({**empty, "shard": str(shard)}))
            else:
                found.extend(items)
                if more:
                    last = {k: found[-1][k]["S"] for k in ("pk", "sk", "gsi2pk", "gsi2sk")}
                    return Page(tuple(load(Device, i) for i in found), encode({**last, "shard": str(shard)}))
            shard, start = shard + 1, None
        return Page(tuple(load(Device, i) for i in found), None)

    def get_devices(self, epns: Sequence[str]) -> list[Device | None]:
        found: dict[str, Device] = {}
        unique = list(dict.fromkeys(epns))
        for start in range(0, len(unique), 100):
            keys = [self._key(Device, epn) for epn in unique[start : start + 100]]
            pending: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while pending:
                answer = self._db.batch_get_item(RequestItems=pending)
                for item in answer.get("Responses", {}).get(self._table, []):
                    device = load(Device, item)
                    found[device.epn] = device
                pending = answer.get("UnprocessedKeys") or {}
        return [found.get(epn) for epn in epns]

    def put_key(self, key: PublisherKey) -> None:
        self._create(key)

    def get_key(self, key_id: str) -> PublisherKey | None:
        return self._get(PublisherKey, key_id)

    def list_keys(self) -> list[PublisherKey]:
        return self._list(PublisherKey, "gsi1", "gsi1pk", "KEYS")

    def delete_key(self, key_id: str) -> bool:
        answer = self._db.delete_item(TableName=self._table, Key=self._key(PublisherKey, key_id),
                                      ReturnValues="ALL_OLD")
        return "Attributes" in answer

    def create_package(self, package: Package) -> None:
        self._create(package)

    def get_package(self, upload_id: str) -> Package | None:
        return self._get(Package, upload_id)

    def save_package(self, package: Package) -> None:
        self._save(package)

    def list_packages(self) -> list[Package]:
        return self._list(Package, "gsi1", "gsi1pk", "PACKAGES")

    def packages_page(self, limit: int, cursor: str | None) -> Page[Package]:
        return self._page(Package, "gsi1", "PACKAGES", limit, cursor)

    def packages_with_sha256(self, sha256: str) -> list[Package]:
        return self._list(Package, "gsi2", "gsi2pk", f"PKGSHA#{sha256}")

    def create_release(self, release: Release) -> None:
        self._create(release)

    def list_releases(self) -> list[Release]:
        return self._list(Release, "gsi1", "gsi1pk", "RELEASES")

    def releases_page(self, limit: int, cursor: str | None) -> Page[Release]:
        return self._page(Release, "gsi1", "RELEASES", limit, cursor)
