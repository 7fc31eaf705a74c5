"""`ObjectStore`: the one way Keel's code reads and writes files, on S3-compatible storage.

What it guarantees, so the domain code calling it never has to think about it:

* Nothing whole in memory. An upload goes out in parts of FILE_PART_SIZE (multipart upload)
  while it is read, a download streams in the storage's chunks, and a checksum is computed
  on the way through.
* Nothing half-written. An upload past its limit, refused, failed or cancelled (the client went
  away, the deadline passed) aborts its multipart upload, so no object and no parts are left.
* Outages are one error: `StorageUnavailable`, a 503 with Retry-After (keel.storage.failures).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PrometheusCounter

from keel.errors import PayloadTooLarge, RangeNotSatisfiable, UnsupportedMediaType
from keel.kit.uploads import SNIFF_BYTES, declared_type_agrees, sniff, split_head
from keel.storage.failures import (
    StorageUnavailable,
    error_code,
    is_outage,
    outage_as_unavailable,
    status_code,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef

# One range of bytes (`bytes=0-99`, `bytes=100-`, `bytes=-100`): passed on to the storage.
# Anything else (several ranges, other units) is ignored and the whole file is sent (RFC 9110).
_SINGLE_RANGE = re.compile(r"bytes=(\d+-\d*|-\d+)")
_DELETE_BATCH = 1_000  # the most keys one DeleteObjects call takes
# Downloads are read and passed on in pieces this large: with aiobotocore's default, 1 KiB,
# a download spends its time on per-piece overhead rather than on moving bytes.
DOWNLOAD_CHUNK = 64 * 1024
# Bytes per second below which a send counts as stalled (beyond the connect and read timeouts).
MIN_SEND_RATE = 1024 * 1024
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


class ObjectTooLarge(PayloadTooLarge):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the {limit} bytes this upload may take.")


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str  # hex
    content_type: str


@dataclass(frozen=True, slots=True)
class UploadInProgress:
    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True, slots=True)
class ObjectStream:
    """An open download: `chunks` streams the body and closes it when done or closed."""

    status: int  # 200, or 206 for a range
    content_length: int
    content_range: str | None
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class PresignedPost:
    """A browser-style form upload: POST `fields` and then the file (field `file`) to `url`."""

    url: str
    fields: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PresignedUrl:
    url: str
    expires_at: datetime


class ObjectStore:
    def __init__(
        self,
        client: S3Client,
        presigner: S3Client,
        *,
        bucket: str,
        part_size: int,
        send_timeout: float,
    ) -> None:
        self._client = client
        self._presigner = presigner  # names the public endpoint in URLs; never connects
        self.bucket = bucket
        self.part_size = part_size
        self._send_timeout = send_timeout
        # Uploads that did not complete, by reason; also a metric once `export_metrics` ran.
        self.upload_failures: Counter[str] = Counter()
        self._failure_metric: PrometheusCounter | None = None

    def export_metrics(self, registry: CollectorRegistry) -> None:
        self._failure_metric = PrometheusCounter(
            "files_upload_failures",
            "Uploads that stored nothing: too_large, type (refused content), unavailable "
            "(storage down), interrupted (client gone, deadline)",
            ["reason"],
            registry=registry,
        )

    def _failed(self, reason: str) -> None:
        self.upload_failures[reason] += 1
        if self._failure_metric is not None:
            self._failure_metric.labels(reason).inc()

    # --- writing ---

    async def receive(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        limit: int,
        allowed_types: Sequence[str],
        declared_type: str | None,
    ) -> StoredObject:
        """Store an uploaded file under `key`, its type decided by its first bytes.

        415 when the content is not one of `allowed_types`, or is not what `declared_type`
        says; 413 once it passes `limit` bytes. Either way nothing is left in storage.
        """
        head, everything = await split_head(chunks, SNIFF_BYTES)
        content_type = sniff(head)
        if content_type is None or content_type not in allowed_types:
            self._failed("type")
            raise UnsupportedMediaType(
                f"The file's content is not one of the accepted types: {', '.join(allowed_types)}."
            )
        if not declared_type_agrees(declared_type, content_type):
            self._failed("type")
            raise UnsupportedMediaType(
                f"The file's content is {content_type}, not the {declared_type} it was sent as."
            )
        return await self.upload(key, everything, limit=limit, content_type=content_type)

    async def upload(
        self, key: str, chunks: AsyncIterator[bytes], *, limit: int, content_type: str
    ) -> StoredObject:
        """Store the bytes of `chunks` under `key`; ObjectTooLarge past `limit` bytes."""
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        multipart: _MultipartUpload | None = None
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ObjectTooLarge(limit)
                digest.update(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= self.part_size:
                    if multipart is None:
                        multipart = await self._begin(key, content_type)
                    await multipart.send(_take(pending))
                    pending_size = 0
            if multipart is None:
                await self._put(key, _take(pending), content_type, digest.digest())
            else:
                if pending:
                    await multipart.send(_take(pending))
                await multipart.complete()
        except BaseException as error:
            self._failed(_failure_reason(error))
            if multipart is not None:
                # Shielded: a cancelled request (client gone, deadline) still aborts.
                await asyncio.shield(multipart.abort())
            raise
        return StoredObject(key, size, digest.hexdigest(), content_type)

    def _sending(self, size: int) -> asyncio.Timeout:
        """A bound on a call that sends a body: a storage that stops reading leaves the send
        waiting on a full socket buffer, where no socket timeout sees it."""
        return asyncio.timeout(self._send_timeout + size / MIN_SEND_RATE)

    async def _put(self, key: str, body: bytes, content_type: str, sha256: bytes) -> None:
        with outage_as_unavailable():
            async with self._sending(len(body)):
                await self._put_object(key, body, content_type, sha256)

    async def _put_object(self, key: str, body: bytes, content_type: str, sha256: bytes) -> None:
        await self._client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            # The storage refuses the body if it arrives different (BadDigest).
            ChecksumSHA256=base64.b64encode(sha256).decode(),
        )

    async def _begin(self, key: str, content_type: str) -> _MultipartUpload:
        with outage_as_unavailable():
            created = await self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
        return _MultipartUpload(self, key, created["UploadId"])

    # --- reading ---

    async def size_of(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is none."""
        with outage_as_unavailable():
            try:
                found = await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if _is_missing(error):
                    return None
                raise
        return found["ContentLength"]

    async def open(self, key: str, byte_range: str | None = None, *, size: int) -> ObjectStream:
        """Stream the object (`size` bytes), or the one range `byte_range` asks for."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range is not None and _SINGLE_RANGE.fullmatch(byte_range.strip()):
            request["Range"] = byte_range.strip()
        with outage_as_unavailable():
            try:
                found = await self._client.get_object(**request)
            except ClientError as error:
                if status_code(error) == 416 or error_code(error) == "InvalidRange":
                    raise RangeNotSatisfiable(size) from error
                raise
        content_range = found.get("ContentRange")
        return ObjectStream(
            status=206 if content_range else 200,
            content_length=found["ContentLength"],
            content_range=content_range,
            chunks=_body_chunks(found["Body"]),
        )

    async def read_head(self, key: str, size: int = SNIFF_BYTES) -> bytes:
        """The object's first `size` bytes (fewer if it is shorter)."""
        stream = await self.open(key, f"bytes=0-{size - 1}", size=size)
        return b"".join([chunk async for chunk in stream.chunks])

    async def sha256(self, key: str, size: int) -> str:
        """The hex SHA-256 of the object's content, streamed through (never held whole)."""
        digest = hashlib.sha256()
        stream = await self.open(key, size=size)
        async for chunk in stream.chunks:
            digest.update(chunk)
        return digest.hexdigest()

    # --- presigned URLs (signed here; the client talks to the storage directly) ---

    async def presign_get(
        self, key: str, *, content_disposition: str, content_type: str, expires: int
    ) -> PresignedUrl:
        expires_at = _after(expires)
        url = await self._presigner.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": content_disposition,
                "ResponseContentType": content_type,
                "ResponseCacheControl": "private, no-store",
            },
            ExpiresIn=expires,
        )
        return PresignedUrl(url, expires_at)

    async def presign_post(
        self, key: str, *, size: int, content_type: str, expires: int
    ) -> PresignedPost:
        """An upload of exactly `size` bytes of `content_type`: the storage refuses any other
        length or type, because both are part of the signed policy."""
        expires_at = _after(expires)
        signed = await self._presigner.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[["content-length-range", size, size], {"Content-Type": content_type}],
            ExpiresIn=expires,
        )
        return PresignedPost(signed["url"], dict(signed["fields"]), expires_at)

    # --- housekeeping ---

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete these objects (missing ones are fine); raises if the storage refused any."""
        for start in range(0, len(keys), _DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": key} for key in keys[start : start + _DELETE_BATCH]
            ]
            with outage_as_unavailable():
                answer = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            failed = [
                error for error in answer.get("Errors", []) if error.get("Code") != "NoSuchKey"
            ]
            if failed:
                raise RuntimeError(f"storage refused to delete {len(failed)} objects: {failed[0]}")

    async def discard(self, key: str) -> None:
        """Delete an object now if the storage lets us, whatever happens to the caller: shielded
        from cancellation, and errors ignored (the worker's sweep of objects no row names
        deletes what is left)."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self.delete([key]))

    async def keys_older_than(self, prefix: str, before: datetime, limit: int) -> list[str]:
        """Up to `limit` keys under `prefix` last written before `before`."""
        found: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        with outage_as_unavailable():
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    if entry["LastModified"] < before:
                        found.append(entry["Key"])
                        if len(found) >= limit:
                            return found
        return found

    async def uploads_in_progress(self, prefix: str) -> list[UploadInProgress]:
        with outage_as_unavailable():
            listed = await self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return [
            UploadInProgress(upload["Key"], upload["UploadId"], upload["Initiated"])
            for upload in listed.get("Uploads", [])
        ]

    async def abort_uploads_older_than(self, prefix: str, before: datetime) -> int:
        """Abort multipart uploads left in progress (a process killed mid-upload)."""
        stale = [
            upload for upload in await self.uploads_in_progress(prefix) if upload.initiated < before
        ]
        for upload in stale:
            with outage_as_unavailable():
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id
                )
        return len(stale)

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (S3_CREATE_BUCKET: compose, dev, tests)."""
        with outage_as_unavailable():
            try:
                await self._client.head_bucket(Bucket=self.bucket)
            except ClientError as error:
                if not _is_missing(error) and error_code(error) != "NoSuchBucket":
                    raise
                try:
                    await self._client.create_bucket(Bucket=self.bucket)
                except ClientError as race:  # another process created it first
                    if error_code(race) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise


class _MultipartUpload:
    def __init__(self, store: ObjectStore, key: str, upload_id: str) -> None:
        self._store = store
        self._client = store._client
        self._bucket = store.bucket
        self._key = key
        self._upload_id = upload_id
        self._parts: list[CompletedPartTypeDef] = []

    async def send(self, body: bytes) -> None:
        number = len(self._parts) + 1
        with outage_as_unavailable():
            async with self._store._sending(len(body)):
                sent = await self._client.upload_part(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    PartNumber=number,
                    Body=body,
                )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def complete(self) -> None:
        with outage_as_unavailable():
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    async def abort(self) -> None:
        # Best effort: if the storage is down, the worker's sweep aborts it later.
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        except Exception as error:
            if not is_outage(error) and not isinstance(error, ClientError):
                raise


async def _body_chunks(body: Any) -> AsyncIterator[bytes]:
    try:
        with outage_as_unavailable():
            async for chunk in body.iter_chunks(DOWNLOAD_CHUNK):
                yield chunk
    finally:
        body.close()


def _after(seconds: int) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _take(pending: list[bytes]) -> bytes:
    """The pending chunks as one part, and the list emptied: one copy per part, no more."""
    part = b"".join(pending)
    pending.clear()
    return part


def _is_missing(error: ClientError) -> bool:
    return status_code(error) == 404 or error_code(error) in _NOT_FOUND_CODES


def _failure_reason(error: BaseException) -> str:
    if isinstance(error, PayloadTooLarge):
        return "too_large"
    if is_outage(error) or isinstance(error, StorageUnavailable):
        return "unavailable"
    return "interrupted"
