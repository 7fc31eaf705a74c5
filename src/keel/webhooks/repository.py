"""Every SQL statement about webhook endpoints, deliveries and attempts.

Ownership is part of each statement (`owner_id = $n`), so no code path can load someone else's
endpoint and forget to check. Timestamps use `clock_timestamp()` where rows written by one
transaction must stay ordered (see keel.items.repository).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from keel.kit.pagination import PageRequest, Slice, fetch_page
from keel.kit.table import TIMESTAMPS, TOUCH, Table
from keel.webhooks.schemas import EndpointRead

# LISTEN/NOTIFY channel: a committed outbox row wakes the relay at once (the notification is
# only delivered if the transaction commits).
OUTBOX_CHANNEL = "keel_webhook_outbox"
JOB_PREFIX = "webhook:"


def delivery_job_id(delivery_id: uuid.UUID, enqueue_count: int) -> str:
    """The ARQ job id of one hand-over of a delivery: deterministic, so enqueueing twice is a
    no-op (ARQ refuses a job id it already holds) and a stale job recognises itself."""
    return f"{JOB_PREFIX}{delivery_id}:{enqueue_count}"


@dataclass(frozen=True, slots=True)
class EndpointSecret:
    """An endpoint and its signing secret, which no read of the endpoint returns."""

    endpoint: EndpointRead
    secret: str


@dataclass(frozen=True, slots=True)
class Delivery:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event: str
    status: str
    attempts: int
    enqueue_count: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime
    job_id: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryTask:
    """What a delivery job needs: the row, its endpoint's URL and current signing secrets."""

    id: uuid.UUID
    status: str
    attempts: int
    enqueue_count: int
    payload: dict[str, Any]
    url: str
    is_active: bool
    secrets: list[str]
    owner_id: uuid.UUID  # the endpoint's: whose circuit breaker the attempts count on


@dataclass(frozen=True, slots=True)
class Claimed:
    id: uuid.UUID
    enqueue_count: int
    owner_id: uuid.UUID
    request_id: str | None


# An endpoint as the API shows it; its secrets are written and read by their own statements.
endpoints = Table("webhook_endpoints", EndpointRead, on_insert=TIMESTAMPS, on_update=TOUCH)
deliveries = Table("webhook_deliveries", Delivery)
NEWEST = "-created_at"
_DELIVERY_D = ", ".join(f"d.{column}" for column in deliveries.columns)


async def insert_endpoint(
    db: asyncpg.Connection,
    owner_id: uuid.UUID,
    url: str,
    events: list[str],
    description: str | None,
    secret: str,
) -> EndpointRead:
    values = {"owner_id": owner_id, "url": url, "events": events, "description": description}
    return await endpoints.insert(db, {**values, "secret": secret})


async def get_endpoint(
    db: asyncpg.Connection, endpoint_id: uuid.UUID, owner_id: uuid.UUID
) -> EndpointRead | None:
    return await endpoints.fetch_one(db, "id = $1 AND owner_id = $2", endpoint_id, owner_id)


async def list_endpoints(
    db: asyncpg.Connection, owner_id: uuid.UUID, page: PageRequest
) -> Slice[EndpointRead]:
    """Newest first; keyset on (created_at, id) over ix_webhook_endpoints_owner_id_created_at_id."""
    return await fetch_page(endpoints, db, page, "owner_id = $1", owner_id, sort=NEWEST)


async def update_endpoint(
    db: asyncpg.Connection,
    endpoint_id: uuid.UUID,
    owner_id: uuid.UUID,
    fields: dict[str, Any],
) -> EndpointRead | None:
    """Set the given columns (names come from the schema's field names, never from input)."""
    where = "id = $1 AND owner_id = $2"
    return await endpoints.update(db, fields, where, endpoint_id, owner_id)


async def delete_endpoint(
    db: asyncpg.Connection, endpoint_id: uuid.UUID, owner_id: uuid.UUID
) -> bool:
    deleted = await db.fetchval(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND owner_id = $2 RETURNING id",
        endpoint_id,
        owner_id,
    )
    return deleted is not None


async def rotate_secret(
    db: asyncpg.Connection,
    endpoint_id: uuid.UUID,
    owner_id: uuid.UUID,
    secret: str,
    grace_seconds: int,
) -> EndpointRead | None:
    """The current secret becomes the previous one, still signing for `grace_seconds`."""
    row = await db.fetchrow(
        f"""
        UPDATE webhook_endpoints SET
            previous_secret = CASE WHEN $4::int > 0 THEN secret END,
            previous_secret_expires_at = CASE
                WHEN $4::int > 0 THEN clock_timestamp() + make_interval(secs => $4::int) END,
            secret = $3,
            updated_at = clock_timestamp()
        WHERE id = $1 AND owner_id = $2
        RETURNING {endpoints.column_list}
        """,  # noqa: S608 - constant column list
        endpoint_id,
        owner_id,
        secret,
        grace_seconds,
    )
    return None if row is None else endpoints.to_row(row)


# --- Outbox writes (in the transaction of the change they announce) ---

_FAN_OUT = """
    INSERT INTO webhook_deliveries (endpoint_id, event, payload, enqueue_count, request_id,
                                    created_at, updated_at, next_attempt_at)
    SELECT id, $2::varchar, $3::jsonb, 1, $4::varchar,
           clock_timestamp(), clock_timestamp(), clock_timestamp()
    FROM webhook_endpoints
    WHERE owner_id = $1 AND is_active AND $2::varchar = ANY(events)
    RETURNING id
"""


async def insert_event_deliveries(
    db: asyncpg.Connection,
    owner_id: uuid.UUID,
    event: str,
    payload: dict[str, Any],
    request_id: str | None = None,
) -> list[uuid.UUID]:
    """One delivery per active endpoint of the owner subscribed to `event`."""
    rows = await db.fetch(_FAN_OUT, owner_id, event, payload, request_id)
    if rows:
        await notify_relay(db)
    return [row["id"] for row in rows]


async def insert_delivery(
    db: asyncpg.Connection,
    endpoint_id: uuid.UUID,
    event: str,
    payload: dict[str, Any],
    request_id: str | None = None,
) -> Delivery:
    row = await db.fetchrow(
        f"""
        INSERT INTO webhook_deliveries (endpoint_id, event, payload, enqueue_count, request_id,
                                        created_at, updated_at, next_attempt_at)
        VALUES ($1, $2, $3, 1, $4, clock_timestamp(), clock_timestamp(), clock_timestamp())
        RETURNING {deliveries.column_list}
        """,  # noqa: S608 - constant column list
        endpoint_id,
        event,
        payload,
        request_id,
    )
    assert row is not None
    await notify_relay(db)
    return deliveries.to_row(row)


async def notify_relay(db: asyncpg.Connection) -> None:
    await db.execute(f"NOTIFY {OUTBOX_CHANNEL}")


# --- Reads for the API ---


async def list_deliveries(
    db: asyncpg.Connection, endpoint_id: uuid.UUID, status: str | None, page: PageRequest
) -> Slice[Delivery]:
    """Newest first; keyset on (created_at, id) over the endpoint's index."""
    if status is None:
        return await fetch_page(deliveries, db, page, "endpoint_id = $1", endpoint_id, sort=NEWEST)
    where = "endpoint_id = $1 AND status = $2"
    return await fetch_page(deliveries, db, page, where, endpoint_id, status, sort=NEWEST)


async def get_delivery(
    db: asyncpg.Connection, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, owner_id: uuid.UUID
) -> Delivery | None:
    row = await db.fetchrow(
        f"SELECT {_DELIVERY_D} FROM webhook_deliveries d "  # noqa: S608
        "JOIN webhook_endpoints e ON e.id = d.endpoint_id "
        "WHERE d.id = $1 AND d.endpoint_id = $2 AND e.owner_id = $3",
        delivery_id,
        endpoint_id,
        owner_id,
    )
    return None if row is None else deliveries.to_row(row)


async def list_attempts(db: asyncpg.Connection, delivery_id: uuid.UUID) -> list[Attempt]:
    rows = await db.fetch(
        "SELECT attempt, started_at, duration_ms, status_code, error FROM webhook_attempts "
        "WHERE delivery_id = $1 ORDER BY id",
        delivery_id,
    )
    return [Attempt(**row) for row in rows]


async def redeliver(
    db: asyncpg.Connection,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    owner_id: uuid.UUID,
    request_id: str | None = None,
) -> int | None:
    """A finished delivery becomes due again with a fresh attempt budget; its new
    enqueue_count, or None when it is not finished (or not the owner's)."""
    count: int | None = await db.fetchval(
        """
        UPDATE webhook_deliveries d SET
            status = 'pending', attempts = 0, enqueue_count = d.enqueue_count + 1,
            enqueued_at = NULL, job_id = NULL, next_attempt_at = clock_timestamp(),
            delivered_at = NULL, request_id = $4, updated_at = clock_timestamp()
        FROM webhook_endpoints e
        WHERE d.id = $1 AND d.endpoint_id = $2 AND e.id = d.endpoint_id AND e.owner_id = $3
          AND d.status IN ('succeeded', 'failed')
        RETURNING d.enqueue_count
        """,
        delivery_id,
        endpoint_id,
        owner_id,
        request_id,
    )
    if count is not None:
        await notify_relay(db)
    return count


# --- Relay ---


async def claim_due(db: asyncpg.Connection, limit: int) -> list[Claimed]:
    """Mark up to `limit` due rows as handed to the queue; concurrent relays skip each other's."""
    rows = await db.fetch(
        f"""
        UPDATE webhook_deliveries d SET
            enqueued_at = clock_timestamp(),
            job_id = '{JOB_PREFIX}' || d.id::text || ':' || d.enqueue_count::text
        FROM webhook_endpoints e
        WHERE e.id = d.endpoint_id AND d.id IN (
            SELECT id FROM webhook_deliveries
            WHERE status = 'pending' AND enqueued_at IS NULL
              AND next_attempt_at <= statement_timestamp()
            ORDER BY next_attempt_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        RETURNING d.id, d.enqueue_count, e.owner_id, d.request_id
        """,  # noqa: S608 - constant prefix
        limit,
    )
    return [Claimed(**row) for row in rows]


async def unclaim(db: asyncpg.Connection, claimed: list[Claimed]) -> None:
    """The queue refused these: due again at the next relay pass."""
    await db.execute(
        """
        UPDATE webhook_deliveries d SET enqueued_at = NULL, job_id = NULL
        FROM unnest($1::uuid[], $2::int[]) AS c(id, enqueue_count)
        WHERE d.id = c.id AND d.enqueue_count = c.enqueue_count AND d.status = 'pending'
        """,
        [row.id for row in claimed],
        [row.enqueue_count for row in claimed],
    )


async def handed_over_before(
    db: asyncpg.Connection, seconds: float, limit: int
) -> list[tuple[uuid.UUID, int, str, str | None]]:
    """Pending rows handed to the queue more than `seconds` ago:
    (id, enqueue_count, job_id, request_id)."""
    rows = await db.fetch(
        """
        SELECT id, enqueue_count, job_id, request_id FROM webhook_deliveries
        WHERE status = 'pending' AND enqueued_at IS NOT NULL AND job_id IS NOT NULL
          AND enqueued_at < statement_timestamp() - make_interval(secs => $1::float8)
        ORDER BY enqueued_at
        LIMIT $2
        """,
        seconds,
        limit,
    )
    return [(row["id"], row["enqueue_count"], row["job_id"], row["request_id"]) for row in rows]


# --- The delivery job ---


async def load_task(db: asyncpg.Connection, delivery_id: uuid.UUID) -> DeliveryTask | None:
    row = await db.fetchrow(
        """
        SELECT d.id, d.status, d.attempts, d.enqueue_count, d.payload, e.url, e.is_active,
               CASE WHEN e.previous_secret IS NOT NULL AND e.previous_secret_expires_at > now()
                    THEN ARRAY[e.secret, e.previous_secret] ELSE ARRAY[e.secret] END AS secrets,
               e.owner_id
        FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.id = $1
        """,
        delivery_id,
    )
    return None if row is None else DeliveryTask(**row)


async def start_attempt(
    db: asyncpg.Connection,
    delivery_id: uuid.UUID,
    enqueue_count: int,
    started_at: datetime,
    placeholder_error: str,
) -> int | None:
    """Count and log an attempt before it is sent (a crash mid-attempt still leaves a trace);
    the attempt row's id, or None when this job is stale."""
    attempt_id: int | None = await db.fetchval(
        """
        WITH counted AS (
            UPDATE webhook_deliveries SET
                attempts = attempts + 1, last_status_code = NULL, last_error = $4::text,
                updated_at = clock_timestamp()
            WHERE id = $1 AND enqueue_count = $2 AND status = 'pending'
            RETURNING attempts
        )
        INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms,
                                      status_code, error)
        SELECT $1, attempts, $3, 0, NULL, $4::text FROM counted
        RETURNING id
        """,
        delivery_id,
        enqueue_count,
        started_at,
        placeholder_error,
    )
    return attempt_id


async def complete_attempt(
    db: asyncpg.Connection,
    attempt_id: int,
    delivery_id: uuid.UUID,
    duration_ms: int,
    status_code: int | None,
    error: str | None,
) -> None:
    await db.execute(
        """
        WITH logged AS (
            UPDATE webhook_attempts
            SET duration_ms = $3::int, status_code = $4::int, error = $5::text
            WHERE id = $1
        )
        UPDATE webhook_deliveries SET
            last_status_code = $4::int, last_error = $5::text, updated_at = clock_timestamp()
        WHERE id = $2
        """,
        attempt_id,
        delivery_id,
        duration_ms,
        status_code,
        error,
    )


async def finish(
    db: asyncpg.Connection,
    delivery_id: uuid.UUID,
    enqueue_count: int,
    status: str,
    error: str | None = None,
) -> bool:
    """succeeded/failed, only if this job still owns the pending row."""
    updated = await db.fetchval(
        """
        UPDATE webhook_deliveries SET
            status = $3::varchar,
            delivered_at = CASE WHEN $3::varchar = 'succeeded' THEN clock_timestamp() END,
            last_error = COALESCE(
                $4::text, CASE WHEN $3::varchar = 'succeeded' THEN NULL ELSE last_error END
            ),
            updated_at = clock_timestamp()
        WHERE id = $1 AND enqueue_count = $2 AND status = 'pending'
        RETURNING id
        """,
        delivery_id,
        enqueue_count,
        status,
        error,
    )
    return updated is not None


async def reschedule(
    db: asyncpg.Connection,
    delivery_id: uuid.UUID,
    enqueue_count: int,
    delay_seconds: float,
    error: str | None = None,
) -> bool:
    """Due again in `delay_seconds`, as a new hand-over (the relay enqueues it then)."""
    updated = await db.fetchval(
        """
        UPDATE webhook_deliveries SET
            enqueue_count = enqueue_count + 1, enqueued_at = NULL, job_id = NULL,
            next_attempt_at = clock_timestamp() + make_interval(secs => $3::float8),
            last_error = COALESCE($4::text, last_error),
            updated_at = clock_timestamp()
        WHERE id = $1 AND enqueue_count = $2 AND status = 'pending'
        RETURNING id
        """,
        delivery_id,
        enqueue_count,
        delay_seconds,
        error,
    )
    return updated is not None


async def purge_finished(db: asyncpg.Connection, older_than_days: int, limit: int) -> int:
    """Delete finished deliveries (their attempts cascade) older than the retention."""
    deleted: int = await db.fetchval(
        """
        WITH doomed AS (
            SELECT id FROM webhook_deliveries
            WHERE created_at < now() - make_interval(days => $1) AND status <> 'pending'
            LIMIT $2
        ), gone AS (
            DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM doomed) RETURNING 1
        )
        SELECT count(*) FROM gone
        """,
        older_than_days,
        limit,
    )
    return deleted
