"""A storage wrapper that plays the attacker of threat 37: the staging object is overwritten through
its still-valid presigned PUT URL at the worst moment for the scan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SwapStaging:
    """The real storage, except that the staging object is overwritten once (as a PUT on the upload URL
    would) right after the scan read it (`after="read"`) or right before the scan publishes (`"publish"`)."""

    def __init__(self, inner: Any, put: Callable[[str, bytes], object], upload_id: str, replacement: bytes,
                 after: str = "read", on_swap: Callable[[str], object] | None = None) -> None:
        self.inner, self.put, self.upload_id, self.replacement = inner, put, upload_id, replacement
        self.after, self.on_swap = after, on_swap
        self.swapped = False

    def _swap(self) -> None:
        if not self.swapped:
            self.swapped = True
            self.put(self.upload_id, self.replacement)
            if self.on_swap is not None:
                self.on_swap(self.upload_id)

    def read_staging(self, upload_id: str, limit: int) -> Any:
        staged = self.inner.read_staging(upload_id, limit)
        if self.after == "read" and staged is not None:
            self._swap()
        return staged

    def publish(self, repository_key: str, data: bytes, sha256: str) -> None:
        if self.after == "publish":
            self._swap()
        self.inner.publish(repository_key, data, sha256)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
