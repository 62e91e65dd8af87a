"""S3 storage: presigned upload/download URLs, staging reads, promotion to the repository, range reads.

Blocks are read with range GETs; an object smaller than CACHE_LIMIT is fetched whole once and kept
for the life of the container (repository objects are immutable, so the cache never goes stale).
Does not: decide anything about packages.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from botocore.exceptions import ClientError

CACHE_LIMIT = 64 * 1024 * 1024
CACHE_TOTAL = 256 * 1024 * 1024


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


class S3Storage:
    def __init__(self, client: Any, staging_bucket: str, repository_bucket: str, *,
                 cache_limit: int = CACHE_LIMIT) -> None:
        self._s3 = client
        self._cache_limit = cache_limit
        self._staging = staging_bucket
        self._repository = repository_bucket
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._large: set[str] = set()

    def upload_url(self, upload_id: str, size: int, expires_seconds: int) -> str:
        return self._s3.generate_presigned_url(
            "put_object", Params={"Bucket": self._staging, "Key": upload_key(upload_id)}, ExpiresIn=expires_seconds
        )

    def staging_size(self, upload_id: str) -> int | None:
        try:
            return int(self._s3.head_object(Bucket=self._staging, Key=upload_key(upload_id))["ContentLength"])
        except ClientError as err:
            if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def read_staging(self, upload_id: str) -> bytes:
        return self._s3.get_object(Bucket=self._staging, Key=upload_key(upload_id))["Body"].read()

    def promote(self, upload_id: str, repository_key: str) -> None:
        self._s3.copy_object(
            Bucket=self._repository, Key=repository_key,
            CopySource={"Bucket": self._staging, "Key": upload_key(upload_id)},
        )

    def download_url(self, repository_key: str, expires_seconds: int) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._repository, "Key": repository_key}, ExpiresIn=expires_seconds
        )

    def read_range(self, repository_key: str, start: int, length: int) -> bytes:
        whole = self._whole(repository_key)
        if whole is not None:
            return whole[start : start + length]
        answer = self._s3.get_object(Bucket=self._repository, Key=repository_key,
                                     Range=f"bytes={start}-{start + length - 1}")
        return answer["Body"].read()

    def _whole(self, key: str) -> bytes | None:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            if key in self._large:
                return None
        head = self._s3.head_object(Bucket=self._repository, Key=key)
        if int(head["ContentLength"]) > self._cache_limit:
            with self._lock:
                self._large.add(key)
            return None
        data = self._s3.get_object(Bucket=self._repository, Key=key)["Body"].read()
        with self._lock:
            self._cache[key] = data
            while sum(len(v) for v in self._cache.values()) > CACHE_TOTAL and len(self._cache) > 1:
                self._cache.popitem(last=False)
        return data
