"""S3 storage: presigned upload/download URLs, staging reads, publication to the repository, range reads.

A staging object stays writable through its presigned PUT URL, so the scan never copies staging to
the repository: `read_staging` returns the bytes together with the ETag of the very GET that returned
them, and `publish` writes those judged bytes themselves to the repository key with `ChecksumSHA256`
(S3 verifies what it received against the SHA-256 the scan recorded and answers BadDigest otherwise)
and `IfNoneMatch: *` (a repository key is written once; an existing one must already hold that SHA-256,
checked from its stored checksum or, for objects written without one, by reading it). A server-side
copy with `CopySourceIfMatch` would also stop a swap, but it trusts the ETag (an MD5 for single-part
uploads, so collidable) and moto ignores the condition, so it could not be tested here.

Blocks are read with range GETs; an object smaller than CACHE_LIMIT is fetched whole once and kept
for the life of the container (repository objects are immutable, so the cache never goes stale).
Does not: decide anything about packages.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from typing import Any

from botocore.exceptions import ClientError

from ..domain.ports import RepositoryIntegrityError, StagedObject

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

    def staging_etag(self, upload_id: str) -> str | None:
        try:
            return str(self._s3.head_object(Bucket=self._staging, Key=upload_key(upload_id))["ETag"])
        except ClientError as err:
            if _missing(err):
                return None
            raise

    def read_staging(self, upload_id: str, limit: int) -> StagedObject | None:
        try:
            answer = self._s3.get_object(Bucket=self._staging, Key=upload_key(upload_id))
        except ClientError as err:
            if _missing(err):
                return None
            raise
        size, body = int(answer["ContentLength"]), answer["Body"]
        if size > limit:
            body.close()  # never pull an oversized upload into memory
            return StagedObject(etag=str(answer["ETag"]), size=size, data=None)
        data = body.read(limit + 1)
        return StagedObject(etag=str(answer["ETag"]), size=len(data), data=data)

    def publish(self, repository_key: str, data: bytes, sha256: str) -> None:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("publish: data does not hash to the given sha256")
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        try:
            answer = self._s3.put_object(Bucket=self._repository, Key=repository_key, Body=data,
                                         ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum, IfNoneMatch="*")
        except ClientError as err:
            if err.response["Error"]["Code"] not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            self._check_existing(repository_key, sha256, checksum)
            return
        stored = answer.get("ChecksumSHA256")
        if stored is not None and stored != checksum:
            raise RepositoryIntegrityError(f"{repository_key}: S3 stored checksum {stored}, expected {checksum}")

    def _check_existing(self, repository_key: str, sha256: str, checksum: str) -> None:
        head = self._s3.head_object(Bucket=self._repository, Key=repository_key, ChecksumMode="ENABLED")
        stored = head.get("ChecksumSHA256")
        if stored is None:  # written without a checksum (e.g. by a copy): hash what is there
            digest = hashlib.sha256()
            for chunk in self._s3.get_object(Bucket=self._repository, Key=repository_key)["Body"].iter_chunks():
                digest.update(chunk)
            same = digest.hexdigest() == sha256
        else:
            same = stored == checksum
        if not same:
            raise RepositoryIntegrityError(f"{repository_key} already holds other bytes; not overwritten")

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


def _missing(err: ClientError) -> bool:
    return err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")
