"""S3 storage: presigned upload/download URLs, staging reads, publication to the repository, range reads.

Staging holds two kinds of object: `uploads/<upload_id>` (an upload slot's presigned PUT) and
`incoming/<anything>` (a release pipeline's own PUT with IAM credentials, read by `read_incoming`).
A staging object stays writable through its presigned PUT URL, so the scan never copies staging to
the repository: `read_staging` returns the bytes together with the ETag of the very GET that returned
them (streamed into an unlinked temporary file and mapped read-only, so a 1 GiB upload costs the
function disk, not heap: ephemeral storage >= the largest package, see services/scan.py), and
`publish` writes those judged bytes themselves to the repository key with `ChecksumSHA256`
(S3 verifies what it received against the SHA-256 the scan recorded and answers BadDigest otherwise)
and `IfNoneMatch: *` (a repository key is written once; an existing one must already hold that SHA-256,
checked from its stored checksum or, for objects written without one, by reading it). A server-side
copy with `CopySourceIfMatch` would also stop a swap, but it trusts the ETag (an MD5 for single-part
uploads, so collidable) and moto ignores the condition, so it could not be tested here.

Blocks are read with range GETs, one per run of consecutive blocks (services.delivery reads a whole
window, at most 8 MiB, in one `read_range`). A repository object of at most CACHE_LIMIT bytes is
fetched whole once and kept for the life of the container (repository objects are immutable, so the
cache never goes stale); the cache holds at most CACHE_TOTAL bytes in all (least recently used
objects are dropped first), so a container's memory for package bytes is bounded by CACHE_TOTAL plus
one read (services.delivery.MAX_READ, 8 MiB), whatever the package sizes: 72 MiB of package bytes
at most per container, plus the runtime. Larger objects are never held whole. A single PUT takes up
to 5 GB, above the service's 4 GiB package ceiling, so `publish` needs no multipart upload.
Does not: decide anything about packages.
"""

from __future__ import annotations

import base64
import hashlib
import mmap
import tempfile
import threading
from collections import OrderedDict
from typing import Any

from botocore.exceptions import ClientError

from ..domain.ports import RepositoryIntegrityError, StagedObject

CACHE_LIMIT = 16 * 1024 * 1024  # objects up to this size are cached whole
CACHE_TOTAL = 64 * 1024 * 1024  # bytes held by the cache of one container, all objects together
SPOOL_CHUNK = 1024 * 1024


INCOMING = "incoming/"  # uploads made straight into the staging bucket with IAM (services/incoming.py)


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


class S3Storage:
    def __init__(self, client: Any, staging_bucket: str, repository_bucket: str, *,
                 cache_limit: int = CACHE_LIMIT, cache_total: int = CACHE_TOTAL) -> None:
        self._s3 = client
        self._cache_limit = min(cache_limit, cache_total)
        self._cache_total = cache_total
        self._cached_bytes = 0
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
        return self._read(upload_key(upload_id), limit)

    def read_incoming(self, key: str, limit: int) -> StagedObject | None:
        if not key.startswith(INCOMING):
            raise ValueError(f"read_incoming: {key!r} is not under {INCOMING}")
        return self._read(key, limit)

    def _read(self, key: str, limit: int) -> StagedObject | None:
        try:
            answer = self._s3.get_object(Bucket=self._staging, Key=key)
        except ClientError as err:
            if _missing(err):
                return None
            raise
        size, body = int(answer["ContentLength"]), answer["Body"]
        etag, modified = str(answer["ETag"]), _stamp(answer.get("LastModified"))
        if size > limit:
            body.close()  # never pull an oversized upload in
            return StagedObject(etag, size, None, key, modified)
        data = _spool(body, limit)
        if data is None:  # grew past the limit while being read
            return StagedObject(etag, limit + 1, None, key, modified)
        return StagedObject(etag, len(data), data, key, modified)

    def publish(self, repository_key: str, data: bytes, sha256: str) -> None:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("publish: data does not hash to the given sha256")
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        body: Any = data
        if isinstance(data, mmap.mmap):  # the spooled staging object: uploaded from its mapping, not copied
            data.seek(0)
        try:
            answer = self._s3.put_object(Bucket=self._repository, Key=repository_key, Body=body,
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
            if key not in self._cache:
                self._cache[key] = data
                self._cached_bytes += len(data)
            while self._cached_bytes > self._cache_total and len(self._cache) > 1:
                self._cached_bytes -= len(self._cache.popitem(last=False)[1])
        return data

    def cached_bytes(self) -> int:
        """Bytes the whole-object cache holds now (never more than cache_total)."""
        with self._lock:
            return self._cached_bytes


def _spool(body: Any, limit: int) -> Any:
    """The streamed GET body in an unlinked temporary file (TMPDIR; Lambda: /tmp), mapped read-only:
    b"" when empty, None when it turned out longer than limit (never read past limit + 1 bytes)."""
    with tempfile.TemporaryFile() as f:
        total = 0
        for chunk in body.iter_chunks(SPOOL_CHUNK):
            total += len(chunk)
            if total > limit:
                body.close()
                return None
            f.write(chunk)
        if total == 0:
            return b""
        f.flush()
        return mmap.mmap(f.fileno(), total, prot=mmap.PROT_READ)  # the mapping outlives the closed file


def _stamp(value: Any) -> str | None:
    """Last-Modified as text (a datetime from boto3)."""
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _missing(err: ClientError) -> bool:
    return err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")
