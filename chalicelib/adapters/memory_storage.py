"""In-memory storage with the semantics of the S3 one (contract tests, quick local runs): staging
uploads, `incoming/` objects and the write-once repository. Thread-safe (one lock). Does not persist
anything.
"""

from __future__ import annotations

import hashlib
import threading

from ..domain.ports import RepositoryIntegrityError, StagedObject


class MemoryStorage:
    """Storage as S3 behaves for the service: staging objects overwritable by `put_staging` (the
    presigned PUT), each write with an S3-style ETag (quoted MD5 of the bytes, as S3 gives for a
    single-part PUT); repository keys written once by `publish`, an existing key accepted only with the
    same SHA-256."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._staging: dict[str, bytes] = {}
        self._incoming: dict[str, tuple[bytes, str]] = {}
        self._puts = 0
        self._repository: dict[str, bytes] = {}

    def put_staging(self, upload_id: str, data: bytes) -> str:
        """What a PUT on the upload URL does; returns the new ETag."""
        with self._lock:
            self._staging[upload_id] = bytes(data)
        return _etag(data)

    def put_incoming(self, key: str, data: bytes) -> str:
        """What `aws s3 cp FILE s3://<staging>/incoming/...` does; returns the new ETag. Each PUT gets a
        new Last-Modified (a counter here: S3's has one-second resolution)."""
        with self._lock:
            self._puts += 1
            self._incoming[key] = (bytes(data), f"put-{self._puts}")
        return _etag(data)

    def read_incoming(self, key: str, limit: int) -> StagedObject | None:
        with self._lock:
            found = self._incoming.get(key)
        if found is None:
            return None
        data, modified = found
        return StagedObject(etag=_etag(data), size=len(data), data=data if len(data) <= limit else None,
                            key=key, modified=modified)

    def repository_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._repository)

    def upload_url(self, upload_id: str, size: int, expires_seconds: int) -> str:
        return f"memory://staging/uploads/{upload_id}?size={size}&expires={expires_seconds}"

    def staging_etag(self, upload_id: str) -> str | None:
        with self._lock:
            data = self._staging.get(upload_id)
        return None if data is None else _etag(data)

    def read_staging(self, upload_id: str, limit: int) -> StagedObject | None:
        with self._lock:
            data = self._staging.get(upload_id)
        if data is None:
            return None
        return StagedObject(etag=_etag(data), size=len(data), data=data if len(data) <= limit else None,
                            key=f"uploads/{upload_id}")

    def publish(self, repository_key: str, data: bytes, sha256: str) -> None:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("publish: data does not hash to the given sha256")
        with self._lock:
            existing = self._repository.get(repository_key)
            if existing is None:
                self._repository[repository_key] = bytes(data)
                return
        if hashlib.sha256(existing).hexdigest() != sha256:
            raise RepositoryIntegrityError(f"{repository_key} already holds other bytes; not overwritten")

    def download_url(self, repository_key: str, expires_seconds: int) -> str:
        return f"memory://repository/{repository_key}?expires={expires_seconds}"

    def read_range(self, repository_key: str, start: int, length: int) -> bytes:
        with self._lock:
            data = self._repository[repository_key]
        return data[start : start + length]


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
