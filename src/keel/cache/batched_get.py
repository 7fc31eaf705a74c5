"""Redis GETs of concurrent requests coalesced into one MGET, on one connection of its own.

While one MGET is in flight, the keys that requests ask for meanwhile queue up, and the next MGET
carries them all: under load a GET costs a fraction of a round trip; a lone request still costs
exactly one. Every answer comes from an MGET sent after the request asked, so it is never older
than a plain GET at that moment would have been.

The MGETs go out one at a time, so they need one connection, not a pool: it is taken from the
client's pool on first use and held until `aclose` (redis-py connects it, authenticates, selects
the database, speaks TLS or a unix socket, exactly as for any other command of that client).
Each MGET is written with `send_packed_command`/`read_response` on that connection, not through
`Redis.mget`: the client's command path (pool checkout with its lock and stray-data probe,
argument encoding, retry wrapper, response callbacks) cost 266k instructions per MGET here, this
path ~100k (both measured). What the client's retry gave is kept where it matters:
a connection that was open and turns out dead (Redis restarted) is retried once on a fresh one,
which is always safe for a read; a timeout is not retried (the caller falls back at once).
"""

# feature: tracing
# Tracing: OpenTelemetry's redis instrumentation wraps the client's command path, so these MGETs
# make no Redis span. One MGET serves many requests and belongs to none of them; under the client
# path its span went to whichever request happened to start the sender.
# end feature: tracing

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

MAX_BATCH = 256  # keys per MGET: bounds one reply's size and the latency of the batch


def pack_mget(keys: list[bytes]) -> bytes:
    """The RESP encoding of `MGET key ...` (an array of bulk strings)."""
    parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
    parts.extend(b"$%d\r\n%b\r\n" % (len(key), key) for key in keys)
    return b"".join(parts)


class BatchedGet:
    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._connection: AbstractConnection | None = None
        self._queue: list[tuple[bytes, asyncio.Future[bytes | None]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._closed = False

    async def get(self, key: str) -> bytes | None:
        """The value of `key`, or None; raises what the MGET raised (redis-py's errors)."""
        if self._closed:  # shutting down: the caller falls back as for any Redis outage
            raise RedisConnectionError("batched GET closed")
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._queue.append((key.encode(), future))
        if self._sender is None:
            # Its own task, not the caller's: a caller that is cancelled (client gone) must not
            # take the batch of everyone else down with it.
            self._sender = asyncio.create_task(self._send_batches(), name="keel-batched-get")
        return await future

    async def aclose(self) -> None:
        """Stop the batch in flight (its waiters get an error) and give the connection back."""
        self._closed = True  # no new sender while this one is stopped: it would use the connection
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            await asyncio.wait([sender])  # a task cancelled before it ran never fails its batch
        queued, self._queue = self._queue, []
        for _, future in queued:
            if not future.done():
                future.set_exception(RedisConnectionError("batched GET closed"))
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool.release(connection)

    async def _send_batches(self) -> None:
        batch: list[tuple[bytes, asyncio.Future[bytes | None]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                batch = [(key, future) for key, future in batch if not future.done()]
                if batch:
                    await self._send(batch)
                batch = []
        except BaseException as error:  # cancelled at shutdown: nobody may wait forever
            for _, future in (*batch, *self._queue):
                if not future.done():
                    future.set_exception(RedisConnectionError(f"batched GET stopped: {error!r}"))
            self._queue = []
            raise
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[bytes | None]]]) -> None:
        try:
            values: list[bytes | None] = await self._mget(pack_mget([key for key, _ in batch]))
        except Exception as error:  # each waiter gets it, as its own GET would have raised it
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)

    async def _mget(self, command: bytes) -> list[bytes | None]:
        if self._connection is None:
            self._connection = await self._pool.get_connection()
        connection = self._connection
        was_open = connection.is_connected
        try:
            return await self._round_trip(connection, command)
        except RedisConnectionError:
            if not was_open:
                raise  # it could not even connect: trying again now would fail the same way
            # redis-py has closed it; the next write connects afresh.
            return await self._round_trip(connection, command)

    @staticmethod
    async def _round_trip(connection: AbstractConnection, command: bytes) -> list[bytes | None]:
        await connection.send_packed_command(command)
        values: list[bytes | None] = await connection.read_response()
        return values
