"""The events hub of one API process: one Redis subscription feeding every open stream.

Each process subscribes once to REALTIME_CHANNEL, whatever its number of streams, and routes
each event to the streams of its owner. Events carry a gapless `position` (keel.realtime.relay):

- a position seen before is dropped (the relay may publish twice after a crash);
- a position past the next one means messages were missed (a Redis restart, a reconnect):
  the hub reads the missing events from PostgreSQL, in order, before going on.

So an open stream loses nothing while Redis is down: when the subscription is back, the hub
reads from PostgreSQL what was committed meanwhile. Every REALTIME_SESSION_CHECK_SECONDS it
also checks the sessions of its streams in one query and ends those revoked (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.types import Send

from keel import draining
from keel.db.database import Database
from keel.observability.metrics import Metrics
from keel.realtime import frames
from keel.realtime import repository as repo
from keel.realtime.metrics import RealtimeMetrics
from keel.realtime.streams import Closing, Stream, Transport
from keel.resources import Resources
from keel.settings import Settings

log = structlog.get_logger(__name__)

CATCH_UP_BATCH = 1_000
PING_SECONDS = 5.0  # the subscription's liveness check: no pong for 3 of these, reconnect
MAX_BACKOFF_SECONDS = 2.0
STOP_SECONDS = 2.0
SUBSCRIBE_SECONDS = 5.0  # subscribing, and closing a subscription, at most
# How often the subscription loop wakes without a message: to ping, and to see `stop`.
WAKE_SECONDS = 0.25


class Refused(Exception):
    """A new stream this process will not open: `status` for SSE, 1013 for a WebSocket;
    `reason` labels it in `realtime_connections_refused_total`."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


class Subscription:
    """One Redis connection subscribed to REALTIME_CHANNEL."""

    def __init__(self, settings: Settings) -> None:
        self._channel = settings.realtime_channel
        # The socket timeout bounds connecting and subscribing (a Redis that is shutting down
        # can accept a connection and never answer); waiting for messages has its own timeout.
        # No retries inside redis-py: a reconnection it made by itself would resubscribe
        # silently, and the hub would not read back what was published meanwhile.
        self._redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_connect_timeout,
            socket_timeout=settings.redis_socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.pubsub = self._redis.pubsub()

    async def open(self) -> None:
        await self.pubsub.subscribe(self._channel)

    async def close(self) -> None:
        # Bounded: closing a connection to a Redis that went away must not hang the loop.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SUBSCRIBE_SECONDS):
                await self.pubsub.aclose()
                await self._redis.aclose()


class EventHub:
    def __init__(self, settings: Settings, db: Database, metrics: RealtimeMetrics) -> None:
        self._settings = settings
        self._db = db
        self.metrics = metrics
        self._by_owner: dict[str, set[Stream]] = {}
        self._count = 0
        # The last position routed; it starts where the relay had published when this process
        # first subscribed (what came before is not owed to streams it did not have yet).
        self._position: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None
        self.draining = False
        self.subscribed = False
        self._stopping = False
        self._all_ended = asyncio.Event()

    # --- Life cycle (the app's lifespan) ---

    async def start(self) -> None:
        self._subscription = await self._first_subscription()
        for name, job in (
            ("subscription", self._subscribe_forever()),
            ("sessions", self._check_sessions_forever()),
            ("heartbeats", self._heartbeats_forever()),
        ):
            self._tasks.append(asyncio.create_task(job, name=f"keel-realtime-{name}"))

    async def _first_subscription(self) -> Subscription | None:
        """Subscribe, then read how far the relay has published: from there on every event
        reaches this process. Part of start-up, so no stream opens before it; None when Redis
        or PostgreSQL is down (the subscription loop does it once they are back)."""
        subscription = Subscription(self._settings)
        try:
            async with asyncio.timeout(SUBSCRIBE_SECONDS):
                await subscription.open()
                self._position = await repo.published_position(self._db)
        except Exception as error:  # a dependency down at start: the loop retries
            log.warning("events subscription not ready at start", error=repr(error))
            await subscription.close()
            return None
        self.subscribed = True
        return subscription

    async def stop(self) -> None:
        # redis-py can turn a cancellation that lands on a read's own timeout into a
        # TimeoutError, which the subscription loop retries: `_stopping` ends it regardless, and
        # the wait is bounded.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
        self._tasks.clear()
        await self._unsubscribe()  # a task cancelled before it ran never closed it

    async def drain(self) -> None:
        """Tell every client to reconnect elsewhere, spread over REALTIME_RECONNECT_SPREAD_SECONDS,
        after writing what is queued for it; wait until every stream has ended."""
        self.draining = True
        spread = self._settings.realtime_reconnect_spread_seconds
        for stream in self.streams():
            retry_ms = int(random.uniform(0.5, spread) * 1000)  # noqa: S311 - jitter, not secrets
            frame = frames.control_frame(frames.CLOSING, retry_after_ms=retry_ms)
            stream.finish(Closing(1001, f"restarting; reconnect in {retry_ms} ms", frame, retry_ms))
        if self._count:
            await self._all_ended.wait()

    # --- Streams ---

    def streams(self) -> list[Stream]:
        return [stream for group in self._by_owner.values() for stream in group]

    def admit(self, owner: str | None) -> None:
        """Raise `Refused` when this process may not open another stream (for `owner`, when
        known)."""
        settings = self._settings
        if self.draining:
            raise Refused(503, "draining", "This server is restarting; reconnect.")
        if self._count >= settings.realtime_max_connections_per_process:
            raise Refused(
                503,
                "process_limit",
                "This server holds as many streams as it may; reconnect later.",
            )
        if owner is None:
            return
        if len(self._by_owner.get(owner, ())) >= settings.realtime_max_connections_per_user:
            raise Refused(429, "user_limit", "Too many open streams for this user.")

    def open(
        self, owner: str, session_id: uuid.UUID, transport: Transport, send: Send, after: int
    ) -> Stream:
        self.admit(owner)
        stream = Stream(
            owner=owner,
            session_id=session_id,
            transport=transport,
            send=send,
            limit=self._settings.realtime_queue_limit,
            last_sequence=after,
            on_end=self._ended,
        )
        self._by_owner.setdefault(owner, set()).add(stream)
        self._count += 1
        self._all_ended.clear()
        self.metrics.opened(transport)
        return stream

    def _ended(self, stream: Stream, closing: Closing) -> None:
        group = self._by_owner.get(stream.owner)
        if group is None or stream not in group:
            return
        group.discard(stream)
        if not group:
            del self._by_owner[stream.owner]
        self._count -= 1
        if not self._count:
            self._all_ended.set()
        self.metrics.closed(stream.transport, closing.code, stream.sent, stream.dropped)

    def close(self, stream: Stream) -> None:
        """The handler's end: the client left (or the stream was ended)."""
        self._ended(stream, stream.closing or Closing(1000, "client left"))

    # --- Fan-out ---

    def _deliver(self, event: frames.Published) -> None:
        self._position = event.position
        self.metrics.fanned_out(time.time() - event.occurred_at)
        for stream in tuple(self._by_owner.get(event.owner, ())):
            stream.offer(event.sequence, event.frame)

    async def _received(self, raw: bytes) -> None:
        event = frames.parse_published(raw)
        assert self._position is not None  # set before any subscription listens
        if event.position <= self._position:
            return  # published twice
        if event.position > self._position + 1:
            await self._catch_up()  # missed some: PostgreSQL has them (this one included)
            return
        self._deliver(event)
        # Let the writers run before the next event: a burst (a relay batch, a catch-up)
        # must not fill the queues of clients that are keeping up.
        await asyncio.sleep(0)

    async def _catch_up(self) -> None:
        while self._position is not None:
            missed = await repo.events_after_position(self._db, self._position, CATCH_UP_BATCH)
            for event in missed:
                self._deliver(frames.from_log(event))
                await asyncio.sleep(0)
            if len(missed) < CATCH_UP_BATCH:
                return

    async def _subscribe_forever(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                if self._subscription is None:
                    self._subscription = await self._resubscribe()
                await self._listen(self._subscription.pubsub)
            except (RedisError, OSError, TimeoutError) as error:
                log.warning(
                    "events subscription lost; resubscribing", error=repr(error), in_s=backoff
                )
            except Exception as error:  # PostgreSQL down during a catch-up: same remedy
                log.warning("events catch-up failed; retrying", error=repr(error), in_s=backoff)
            finally:  # also when the hub stops (cancelled)
                await self._unsubscribe()
            if self.subscribed:  # it worked until now: the next attempt comes quickly
                backoff = 0.1
            self.subscribed = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.close()

    async def _resubscribe(self) -> Subscription:
        """Subscribe again, then read from PostgreSQL what was published while not subscribed."""
        subscription = Subscription(self._settings)
        try:
            async with asyncio.timeout(SUBSCRIBE_SECONDS):
                await subscription.open()
            if self._position is None:  # never subscribed: start from now
                self._position = await repo.published_position(self._db)
            self.subscribed = True
            log.info("events subscription ready", caught_up_from=self._position)
            await self._catch_up()
        except BaseException:
            await subscription.close()
            raise
        return subscription

    async def _listen(self, pubsub: PubSub) -> None:
        last_heard = time.monotonic()
        next_ping = last_heard + PING_SECONDS
        while not self._stopping:
            async with asyncio.timeout(WAKE_SECONDS + self._settings.redis_socket_timeout + 1):
                message = await pubsub.get_message(timeout=WAKE_SECONDS)
            now = time.monotonic()
            if message is not None:
                last_heard = now
                if message["type"] == "message":
                    await self._received(message["data"])
            if now >= next_ping:
                await pubsub.ping()
                next_ping = now + PING_SECONDS
            if now - last_heard > 3 * PING_SECONDS:
                raise TimeoutError("no answer from Redis")

    # --- Housekeeping ---

    async def _check_sessions_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.realtime_session_check_seconds)
            streams = self.streams()
            if not streams:
                continue
            try:
                valid = await repo.valid_sessions(self._db, list({s.session_id for s in streams}))
            except Exception as error:  # PostgreSQL down: check again next time
                log.warning("stream sessions not checked", error=repr(error))
                continue
            for stream in streams:
                if stream.session_id not in valid:
                    stream.revoke()

    async def _heartbeats_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.realtime_heartbeat_seconds)
            for stream in self.streams():
                if stream.transport is Transport.SSE:
                    stream.heartbeat()


@contextlib.asynccontextmanager
async def open_hub(resources: Resources, metrics: Metrics | None) -> AsyncIterator[EventHub]:
    """The hub of an API process, started, and drained on a graceful shutdown (keel.draining)."""
    registry = metrics.registry if metrics is not None else None
    hub = EventHub(resources.settings, resources.db, RealtimeMetrics(registry))
    await hub.start()
    draining.on_drain(hub.drain)
    try:
        yield hub
    finally:
        draining.forget(hub.drain)
        await hub.stop()
