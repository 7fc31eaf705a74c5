"""Webhook rules: endpoints owned by users, URL checks, the outbox writes, redelivery.

No HTTP in here: the same functions serve the API and jobs. Endpoints are visible to their owner
only; anyone else gets 404 (ids cannot be probed).
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from keel.auth.service import Principal
from keel.errors import Conflict, NotFound, Unprocessable
from keel.jobs.ownership import record_owners
from keel.kit.pagination import PageRequest, Slice
from keel.observability.context import current_request_id
from keel.settings import Settings
from keel.webhooks import repository as repo
from keel.webhooks import signing, ssrf
from keel.webhooks.events import event_payload
from keel.webhooks.repository import Attempt, Delivery, EndpointSecret
from keel.webhooks.schemas import PING_EVENT, EndpointCreate, EndpointRead, EndpointUpdate

log = structlog.get_logger(__name__)

ENDPOINT_NOT_FOUND = "No such webhook endpoint."
DELIVERY_NOT_FOUND = "No such delivery."
NOT_FINISHED = "The delivery is still pending; redeliver it once it has succeeded or failed."


async def check_url(url: str, settings: Settings) -> str:
    """Refuse a URL the worker must not call (422), before anything connects to it."""
    try:
        await ssrf.resolve_target(url, settings)
    except ssrf.UnsafeUrl as error:
        raise Unprocessable(f"url: {error}", field="url") from None
    except (OSError, TimeoutError):
        # Worded as a forbidden address is: telling "no such name" from "an internal name"
        # would let a user probe which internal names exist.
        raise Unprocessable(f"url: {ssrf.NOT_PUBLIC}", field="url") from None
    return url


async def create_endpoint(
    db: asyncpg.Connection, settings: Settings, actor: Principal, data: EndpointCreate
) -> EndpointSecret:
    url = await check_url(data.url, settings)
    secret = signing.generate_secret()
    endpoint = await repo.insert_endpoint(
        db, actor.user_id, url, sorted(set(data.events)), data.description, secret
    )
    return EndpointSecret(endpoint, secret)


async def get_endpoint(
    db: asyncpg.Connection, actor: Principal, endpoint_id: uuid.UUID
) -> EndpointRead:
    endpoint = await repo.get_endpoint(db, endpoint_id, actor.user_id)
    if endpoint is None:
        raise NotFound(ENDPOINT_NOT_FOUND)
    return endpoint


async def list_endpoints(
    db: asyncpg.Connection, actor: Principal, page: PageRequest
) -> Slice[EndpointRead]:
    return await repo.list_endpoints(db, actor.user_id, page)


async def update_endpoint(
    db: asyncpg.Connection,
    settings: Settings,
    actor: Principal,
    endpoint_id: uuid.UUID,
    data: EndpointUpdate,
) -> EndpointRead:
    fields = data.changes()
    if "url" in fields:
        fields["url"] = await check_url(fields["url"], settings)
    if "events" in fields:
        fields["events"] = sorted(set(fields["events"]))
    endpoint = await repo.update_endpoint(db, endpoint_id, actor.user_id, fields)
    if endpoint is None:
        raise NotFound(ENDPOINT_NOT_FOUND)
    return endpoint


async def delete_endpoint(db: asyncpg.Connection, actor: Principal, endpoint_id: uuid.UUID) -> None:
    """Its deliveries go with it; a job still queued for one finds nothing and does nothing."""
    if not await repo.delete_endpoint(db, endpoint_id, actor.user_id):
        raise NotFound(ENDPOINT_NOT_FOUND)


async def rotate_secret(
    db: asyncpg.Connection, settings: Settings, actor: Principal, endpoint_id: uuid.UUID
) -> EndpointSecret:
    secret = signing.generate_secret()
    endpoint = await repo.rotate_secret(
        db, endpoint_id, actor.user_id, secret, settings.webhook_secret_rotation_grace_seconds
    )
    if endpoint is None:
        raise NotFound(ENDPOINT_NOT_FOUND)
    return EndpointSecret(endpoint, secret)


async def list_deliveries(
    db: asyncpg.Connection,
    actor: Principal,
    endpoint_id: uuid.UUID,
    page: PageRequest,
    *,
    status: str | None = None,
) -> Slice[Delivery]:
    await get_endpoint(db, actor, endpoint_id)
    return await repo.list_deliveries(db, endpoint_id, status, page)


async def get_delivery(
    db: asyncpg.Connection, actor: Principal, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[Delivery, list[Attempt]]:
    delivery = await repo.get_delivery(db, endpoint_id, delivery_id, actor.user_id)
    if delivery is None:
        raise NotFound(DELIVERY_NOT_FOUND)
    return delivery, await repo.list_attempts(db, delivery_id)


async def _remember_owner(redis: Redis, settings: Settings, job_id: str, owner: uuid.UUID) -> None:
    # Best effort: the relay records the owner again when it enqueues the job.
    with contextlib.suppress(RedisError, OSError):
        await record_owners(redis, settings, {job_id: owner})


async def redeliver(
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    actor: Principal,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> str:
    """Send a finished delivery again (same Webhook-Id, fresh attempt budget); its job id.

    The row becomes due in this transaction; the relay enqueues it once the transaction commits.
    """
    ticket = await repo.redeliver(db, endpoint_id, delivery_id, actor.user_id, current_request_id())
    if ticket is None:
        if await repo.get_delivery(db, endpoint_id, delivery_id, actor.user_id) is None:
            raise NotFound(DELIVERY_NOT_FOUND)
        raise Conflict(NOT_FINISHED)
    job_id = repo.delivery_job_id(delivery_id, ticket)
    await _remember_owner(redis, settings, job_id, actor.user_id)
    return job_id


async def ping(
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    actor: Principal,
    endpoint_id: uuid.UUID,
) -> tuple[uuid.UUID, str]:
    """Queue a `webhook.ping` delivery to the endpoint: (delivery id, job id)."""
    endpoint = await get_endpoint(db, actor, endpoint_id)
    delivery = await repo.insert_delivery(
        db,
        endpoint.id,
        PING_EVENT,
        event_payload(PING_EVENT, {"endpoint_id": str(endpoint.id)}, datetime.now(UTC)),
        current_request_id(),
    )
    job_id = repo.delivery_job_id(delivery.id, delivery.enqueue_count)
    await _remember_owner(redis, settings, job_id, actor.user_id)
    return delivery.id, job_id
