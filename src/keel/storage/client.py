"""The S3 clients of one process, built from settings (aiobotocore: see docs/files.md)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from keel.settings import Settings
from keel.storage.failures import StorageUnavailable
from keel.storage.store import ObjectStore

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = structlog.get_logger(__name__)


def _config(settings: Settings) -> AioConfig:
    return AioConfig(
        # Without it botocore signs SigV2 for a custom endpoint, and a presigned upload would
        # not bind its length.
        signature_version="s3v4",
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        retries={"total_max_attempts": settings.s3_max_attempts, "mode": "standard"},
        max_pool_connections=settings.s3_max_connections,
        # Bucket in the path: works with every S3-compatible server and any DNS.
        s3={"addressing_style": "path"},
    )


def _credentials(settings: Settings) -> dict[str, Any]:
    if settings.s3_access_key_id is None or settings.s3_secret_access_key is None:
        return {}  # the default chain: workload identity, AWS_* variables, config files
    return {
        "aws_access_key_id": settings.s3_access_key_id.get_secret_value(),
        "aws_secret_access_key": settings.s3_secret_access_key.get_secret_value(),
    }


async def open_s3_client(
    stack: AsyncExitStack, settings: Settings, *, public: bool = False
) -> S3Client:
    """A client closed by `stack`. `public`: for presigning only, naming the endpoint clients
    reach (S3_PUBLIC_ENDPOINT_URL); presigning is local and never connects."""
    endpoint = settings.s3_endpoint_url
    if public and settings.s3_public_endpoint_url:
        endpoint = settings.s3_public_endpoint_url
    creator = get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        config=_config(settings),
        **_credentials(settings),
    )
    client: S3Client = await stack.enter_async_context(creator)
    client.meta.events.register("before-send.s3", _without_expect_continue)
    return client


def _without_expect_continue(request: Any, **_: Any) -> None:
    """botocore asks for `100 Continue` before sending an object's body, and aiohttp waits for
    that answer with no timeout at all: a storage that accepts the connection and never answers
    (blackholed) would hold the upload forever. Without it the body is sent at once and the
    read timeout applies. (`Expect` is never signed, so removing it is safe.)"""
    if "Expect" in request.headers:
        del request.headers["Expect"]


async def open_object_store(stack: AsyncExitStack, settings: Settings) -> ObjectStore:
    """The process's ObjectStore; with S3_CREATE_BUCKET, its bucket made if missing (a storage
    still starting only delays that to the first upload's 503, never the process's start)."""
    client = await open_s3_client(stack, settings)
    presigner = client
    if settings.s3_public_endpoint_url:
        presigner = await open_s3_client(stack, settings, public=True)
    store = ObjectStore(
        client,
        presigner,
        bucket=settings.s3_bucket,
        part_size=settings.file_part_size,
        send_timeout=settings.s3_connect_timeout + settings.s3_read_timeout,
    )
    if settings.s3_create_bucket:
        try:
            await store.ensure_bucket()
        except StorageUnavailable:
            log.warning("storage unreachable at start; bucket not checked", bucket=store.bucket)
    return store
