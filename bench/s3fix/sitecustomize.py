"""Opt-in fix for moto's S3 range GETs, loaded into the local stack's processes by bench.large (it also
loads bench/sqsfix, which it replaces on PYTHONPATH, since only one sitecustomize is imported).

moto 5.x answers a ranged GetObject by reading the WHOLE object out of its spooled buffer
(FakeKey.value) and slicing it afterwards (S3Response._handle_range_header), so every range GET of a
1 GiB object reads and copies 1 GiB: the cloud's window-sized range reads would measure moto, not the
service. This module makes FakeKey.value lazy while a simple `Range: bytes=A-B` GET is answered (the
slice reads only A..B from the buffer) and changes nothing else. Real S3 serves ranges without such a
cost, so the fix makes the local stack closer to AWS, not faster. Acts only in the moto server.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

_TARGET = "moto.s3.responses"
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
_local = threading.local()


class _LazyValue:
    """len() and [a:b] of a FakeKey's bytes without reading the rest."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.contentsize)

    def __getitem__(self, item: slice) -> bytes:
        if not isinstance(item, slice):
            raise TypeError("only slices")
        start, stop, _ = item.indices(len(self))
        with self._key.lock:
            buffer = self._key._value_buffer
            buffer.seek(start)
            return bytes(buffer.read(max(0, stop - start)))


def _patch(responses: ModuleType) -> None:
    models = importlib.import_module("moto.s3.models")
    key_class = models.FakeKey
    full_value = key_class.value.fget
    setter = key_class.value.fset
    response_class = responses.S3Response
    get_object = response_class.get_object

    def value(self: Any) -> Any:
        if getattr(_local, "ranged", False):
            return _LazyValue(self)
        return full_value(self)

    def patched_get_object(self: Any) -> Any:
        match = _RANGE.match(self.headers.get("range", "") or "")
        _local.ranged = bool(match and int(match.group(1)) <= int(match.group(2)))
        try:
            return get_object(self)
        finally:
            _local.ranged = False

    key_class.value = property(value, setter)
    response_class.get_object = patched_get_object


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _patch(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _load_sqsfix() -> None:
    path = Path(__file__).resolve().parents[1] / "sqsfix" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("bench_sqsfix", path)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


_load_sqsfix()
sys.meta_path.insert(0, _Finder())
