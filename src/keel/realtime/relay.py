"""The relay: numbers committed events and publishes them to every API process, in order.

One worker process at a time relays: it holds a PostgreSQL advisory lock on its LISTEN
connection (released by PostgreSQL if that process dies, when another worker takes over). On
every notification (a committed event) and at least every REALTIME_RELAY_INTERVAL_SECONDS it:

1. numbers the committed events in one transaction (`position`, gapless across owners, and
   each owner's `sequence`; keel.realtime.repository);
2. publishes the numbered events not yet published, in position order, on REALTIME_CHANNEL;
3. records how far it published.

Redis down: step 2 fails, nothing is marked published, and the relay retries with backoff; the
events wait in PostgreSQL. A crash between 2 and 3 publishes some events twice; processes drop
positions they have already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import asyncpg
import structlog

from keel.realtime import frames
from keel.realtime import repository as repo
from keel.resources import Resources

log = structlog.get_logger(__name__)

BATCH = 500
MAX_BACKOFF_SECONDS = 2.0
# pg_try_advisory_lock key: the relay's leadership (any constant no other lock uses).
RELAY_LOCK_KEY = 0x6B65656C_7274  # "keel" "rt"


async def sequence_all(resources: Resources) -> int:
    total = 0
    while True:
        async with resources.db.transaction() as db:
            numbered = await repo.sequence_committed(db, BATCH)
        total += numbered
        if numbered < BATCH:
            return total


async def publish_all(resources: Resources) -> int:
    """Publish every numbered event not published yet; raises when Redis refuses."""
    total = 0
    channel = resources.settings.realtime_channel
    while True:
        events = await repo.unpublished(resources.db, BATCH)
        if not events:
            return total
        async with resources.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(channel, frames.published_message(event))
            await pipe.execute()
        async with resources.db.transaction() as db:
            await repo.mark_published(db, events[-1].position)
        total += len(events)


class EventRelay:
    """One background task per worker process; only the lock holder relays."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self._settings = resources.settings
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="keel-realtime-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_listener()

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _lead(self) -> bool:
        """Whether this process relays: it holds the lock on a live LISTEN connection."""
        if self._listener is not None and not self._listener.is_closed():
            return True
        await self._close_listener()
        connection = await asyncpg.connect(
            self._settings.database_url,
            timeout=self._settings.db_connect_timeout,
            server_settings={
                "application_name": f"keel-events@{socket.gethostname()}:{os.getpid()}"
            },
        )
        try:
            if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                await connection.close()
                return False
            await connection.add_listener(repo.RELAY_CHANNEL, self._notified)
        except BaseException:
            await connection.close()
            raise
        self._listener = connection
        return True

    async def _close_listener(self) -> None:
        connection, self._listener = self._listener, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def _run(self) -> None:
        interval = self._settings.realtime_relay_interval_seconds
        backoff = 0.2
        while True:
            try:
                if await self._lead():
                    await sequence_all(self._resources)
                    await publish_all(self._resources)
                backoff = 0.2
            except Exception as error:  # PostgreSQL or Redis down: events wait; retry
                log.warning("event relay failed; retrying", error=repr(error), in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            await self._wait(interval)
