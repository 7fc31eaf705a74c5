"""The outbox relay: hands due delivery rows to the ARQ queue, after their transaction commits.

Flow (docs/jobs.md): a change writes its delivery rows in its own transaction and sends
`NOTIFY keel_webhook_outbox`, which PostgreSQL delivers only if that transaction commits. Each
worker runs one relay task that LISTENs on a dedicated connection and, on a notification or at
least every WEBHOOK_RELAY_INTERVAL_SECONDS, claims due rows (`FOR UPDATE SKIP LOCKED`, so relays
in several workers split the work), commits the claim, then enqueues one job per row under a
deterministic job id. If Redis refuses, the claim is undone and the rows stay due: the API never
needs Redis to commit a change, and nothing is lost while Redis is down.

A crash between the claim's commit and the enqueue leaves a row claimed without a job; the
`relay_outbox` cron finds rows claimed for over a minute whose job is not in Redis and hands
them over again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from redis.exceptions import RedisError

from keel.jobs.context import JOB_REQUEST_ID_KWARG
from keel.jobs.ownership import record_owners
from keel.resources import Resources
from keel.webhooks import repository as repo

log = structlog.get_logger(__name__)

DELIVER_FUNCTION = "deliver_webhook"
ENQUEUE_CONCURRENCY = 32
STRANDED_AFTER_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 10.0


async def enqueue_delivery(
    resources: Resources, delivery_id: uuid.UUID, ticket: int, request_id: str | None
) -> None:
    job_id = repo.delivery_job_id(delivery_id, ticket)
    # The job's log lines carry the id of the request that caused the delivery.
    extra: dict[str, Any] = {JOB_REQUEST_ID_KWARG: request_id} if request_id else {}
    # None means ARQ already holds this job id: enqueued before, nothing to do.
    await resources.arq.enqueue_job(
        DELIVER_FUNCTION, str(delivery_id), ticket, _job_id=job_id, **extra
    )


async def relay_due(resources: Resources, limit: int) -> int:
    """Claim up to `limit` due rows and enqueue them; the number handed over.

    Raises the Redis error when the queue refuses (after undoing the claim of what was not
    enqueued), so the caller can back off.
    """
    async with resources.db.transaction() as db:
        claimed = await repo.claim_due(db, limit)
    if not claimed:
        return 0
    handover = await _enqueue_claimed(resources, claimed)
    if handover.failed:
        async with resources.db.transaction() as db:
            await repo.unclaim(db, handover.failed)
    await _record_job_owners(resources, handover.enqueued)
    error = handover.error
    if error is not None:
        if isinstance(error, Exception):
            raise error
        raise RuntimeError("enqueue failed") from error
    return len(handover.enqueued)


@dataclass(slots=True)
class _Handover:
    enqueued: list[repo.Claimed] = field(default_factory=list)
    failed: list[repo.Claimed] = field(default_factory=list)
    error: BaseException | None = None  # the first refusal: later chunks are not tried


async def _enqueue_claimed(resources: Resources, claimed: list[repo.Claimed]) -> _Handover:
    """Enqueue the claimed rows, ENQUEUE_CONCURRENCY at a time, until the queue refuses one."""
    handover = _Handover()
    for start in range(0, len(claimed), ENQUEUE_CONCURRENCY):
        chunk = claimed[start : start + ENQUEUE_CONCURRENCY]
        if handover.error is not None:
            handover.failed.extend(chunk)
            continue
        results = await asyncio.gather(
            *(
                enqueue_delivery(resources, row.id, row.enqueue_count, row.request_id)
                for row in chunk
            ),
            return_exceptions=True,
        )
        for row, result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                handover.failed.append(row)
                handover.error = handover.error or result
            else:
                handover.enqueued.append(row)
    return handover


async def _record_job_owners(resources: Resources, enqueued: list[repo.Claimed]) -> None:
    """Record who may see each job (keel.jobs.ownership); best effort: Redis may be down."""
    owners = {repo.delivery_job_id(row.id, row.enqueue_count): row.owner_id for row in enqueued}
    with contextlib.suppress(RedisError, OSError):
        await record_owners(resources.redis, resources.settings, owners)


async def relay_all(resources: Resources) -> int:
    """Relay until nothing is due (batches of WEBHOOK_RELAY_BATCH_SIZE)."""
    batch = resources.settings.webhook_relay_batch_size
    total = 0
    while True:
        moved = await relay_due(resources, batch)
        total += moved
        if moved < batch:
            return total


async def rescue_stranded(resources: Resources, older_than: float = STRANDED_AFTER_SECONDS) -> int:
    """Rows claimed long ago whose job is gone from Redis (lost enqueue, Redis flushed, a job
    that ended without recording an outcome): hand them over again. The number rescued."""
    async with resources.db.transaction() as db:
        rows = await repo.handed_over_before(db, older_than, 500)
    rescued = 0
    for delivery_id, ticket, job_id, request_id in rows:
        redis = resources.redis
        if await redis.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id):
            continue  # queued or running: fine
        if await redis.exists(result_key_prefix + job_id):
            # The job ran and ended without an outcome: a new hand-over, now.
            async with resources.db.transaction() as db:
                await repo.reschedule(
                    db, delivery_id, ticket, 0, "the job ended without recording an outcome"
                )
        else:
            await enqueue_delivery(resources, delivery_id, ticket, request_id)
        rescued += 1
    if rescued:
        log.warning("outbox rows rescued", count=rescued)
    return rescued


class OutboxRelay:
    """One background task per worker process: LISTEN, claim, enqueue, repeat."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self._settings = resources.settings
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        # Back off while Redis or PostgreSQL is down, but notice their return within seconds.
        interval = self._settings.webhook_relay_interval_seconds
        self._max_backoff = min(MAX_BACKOFF_SECONDS, max(1.0, interval * 5))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="keel-outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_listener()

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._close_listener()
        try:
            connection = await asyncpg.connect(
                self._settings.database_url,
                timeout=self._settings.db_connect_timeout,
                server_settings={
                    "application_name": f"keel-relay@{socket.gethostname()}:{os.getpid()}"
                },
            )
            await connection.add_listener(repo.OUTBOX_CHANNEL, self._notified)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("outbox relay cannot LISTEN; polling only", error=repr(error))
            return
        self._listener = connection
        self._wake.set()  # notifications may have been missed while not listening

    async def _close_listener(self) -> None:
        connection, self._listener = self._listener, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)

    async def _run(self) -> None:
        backoff = min(0.5, self._max_backoff)
        while True:
            await self._ensure_listener()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.webhook_relay_interval_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                moved = await relay_all(self._resources)
            except Exception as error:  # Redis or PostgreSQL down: rows stay due; retry later
                log.warning("outbox relay failed; retrying", error=repr(error), in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                self._wake.set()
                continue
            backoff = min(0.5, self._max_backoff)
            if moved:
                log.debug("outbox relayed", count=moved)
