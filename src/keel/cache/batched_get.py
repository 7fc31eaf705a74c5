"""Redis GETs of concurrent requests coalesced into one MGET.

redis-py costs ~120 us of CPU per command here, more than the rest of an authenticated item GET
outside the framework. While one MGET is in flight, the keys that requests ask for meanwhile
queue up, and the next MGET carries them all: under load a GET costs a fraction of a round
trip; a lone request still costs exactly one. Every answer comes from an MGET sent after the
request asked, so it is never older than a plain GET at that moment would have been.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

MAX_BATCH = 256  # keys per MGET: bounds one reply's size and the latency of the batch


class BatchedGet:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queue: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def get(self, key: str) -> bytes | None:
        """The value of `key`, or None; raises what the MGET raised (redis-py's errors)."""
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._queue.append((key, future))
        if self._sender is None:
            # Its own task, not the caller's: a caller that is cancelled (client gone) must not
            # take the batch of everyone else down with it.
            self._sender = asyncio.create_task(self._send_batches(), name="keel-batched-get")
        return await future

    async def _send_batches(self) -> None:
        batch: list[tuple[str, asyncio.Future[bytes | None]]] = []
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
                    future.set_exception(ConnectionError(f"batched GET stopped: {error!r}"))
            self._queue = []
            raise
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        try:
            values: list[bytes | None] = await self._redis.mget([key for key, _ in batch])
        except Exception as error:  # each waiter gets it, as its own GET would have raised it
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)
