"""One client's open stream: a bounded queue, and a writer task only while there is a backlog.

An idle stream holds no task of its own: its handler waits for the client (`receive`), and a
writer task exists only from the moment an event is queued until the queue is empty again. The
writer sends what has queued up meanwhile in one go (one SSE chunk; consecutive WebSocket
frames), which is what keeps the cost per delivery low under a burst.

A client that falls REALTIME_QUEUE_LIMIT events behind is dropped (WebSocket close 1013, SSE
stream cut): its backlog is discarded at once and it resumes from its last event id when it
reconnects. Nothing it does slows the delivery to anyone else.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from starlette.types import Message, Send

from keel.realtime import frames

# Queue entries: (sequence, frame). Control messages have sequence 0 and are never deduplicated.
Entry = tuple[int, str]
CONTROL = 0
HEARTBEAT = ""  # the frame of an SSE heartbeat (a comment line)


class Transport(StrEnum):
    WEBSOCKET = "websocket"
    SSE = "sse"


@dataclass(frozen=True, slots=True)
class Closing:
    """How a stream ends: the WebSocket close code and reason, and the last frame it gets."""

    code: int
    reason: str
    frame: str | None = None
    retry_ms: int | None = None


SLOW_CONSUMER = Closing(1013, "too far behind: reconnect with your last event id")
SESSION_REVOKED = Closing(
    1008, "session revoked", frames.control_frame(frames.CLOSED, reason="session revoked")
)


def websocket_message(entry: Entry) -> Message:
    return {"type": "websocket.send", "text": entry[1]}


def sse_chunk(entries: list[Entry]) -> bytes:
    parts = []
    for sequence, frame in entries:
        if sequence != CONTROL:
            parts.append(frames.sse_event(sequence, frame))
        elif frame == HEARTBEAT:
            parts.append(frames.SSE_HEARTBEAT)
        else:
            parts.append(frames.sse_control(frame))
    return b"".join(parts)


class Stream:
    __slots__ = (
        "_handler",
        "_limit",
        "_on_end",
        "_queue",
        "_send",
        "_writer",
        "closing",
        "dropped",
        "last_sequence",
        "owner",
        "replaying",
        "sent",
        "session_id",
        "transport",
    )

    def __init__(
        self,
        *,
        owner: str,
        session_id: uuid.UUID,
        transport: Transport,
        send: Send,
        limit: int,
        last_sequence: int,
        on_end: Callable[[Stream, Closing], None],
    ) -> None:
        self.owner = owner
        self.session_id = session_id
        self.transport = transport
        self.last_sequence = last_sequence  # the newest event queued or sent
        self.replaying = True  # events queue up, unsent, until the replay is written
        self.closing: Closing | None = None
        self.sent = 0
        self.dropped = 0  # events discarded unsent (a slow consumer's, a revoked session's)
        self._send = send
        self._limit = limit
        self._on_end = on_end
        self._queue: deque[Entry] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._handler = asyncio.current_task()

    def offer(self, sequence: int, frame: str) -> None:
        """Queue an event (a hub call, for every stream of the owner: never blocks)."""
        if self.closing is not None or sequence <= self.last_sequence:
            return
        if len(self._queue) >= self._limit:
            self.abort(SLOW_CONSUMER)
            return
        self.last_sequence = sequence
        self._queue.append((sequence, frame))
        self._wake()

    def control(self, frame: str) -> None:
        if self.closing is None:
            self._queue.append((CONTROL, frame))
            self._wake()

    def heartbeat(self) -> None:
        """An SSE comment when nothing else is being written (dead peers fail the write)."""
        if self._writer is None and not self.replaying:
            self.control(HEARTBEAT)

    def replayed(self, last_sequence: int) -> None:
        """The replay up to `last_sequence` is written: send what queued up after it."""
        self.replaying = False
        while self._queue and CONTROL < self._queue[0][0] <= last_sequence:
            self._queue.popleft()
        self.last_sequence = max(self.last_sequence, last_sequence)
        self._wake()

    def finish(self, closing: Closing) -> None:
        """End after writing what is queued (drain, shutdown): the client loses nothing."""
        if self.closing is None:
            self.closing = closing
            self._wake(force=True)

    def revoke(self) -> None:
        """End now, discarding the backlog, with the reason as the last frame (what a client
        that reconnects would be refused for anyway)."""
        self._discard_backlog()
        self.finish(SESSION_REVOKED)

    def abort(self, closing: Closing) -> None:
        """End now, discarding the backlog (a slow consumer, a client that is gone)."""
        if self.closing is not None:
            return
        self.closing = closing
        self._discard_backlog()
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        self._on_end(self, closing)
        if self._handler is not None:  # the handler ends the connection (keel.realtime.gateway)
            self._handler.cancel()

    def _discard_backlog(self) -> None:
        self.dropped += sum(1 for sequence, _ in self._queue if sequence != CONTROL)
        self._queue.clear()

    def _wake(self, *, force: bool = False) -> None:
        if self._writer is None and (force or not self.replaying):
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._queue:
                batch = list(self._queue)
                self._queue.clear()
                await self._deliver(batch)
            if self.closing is not None:
                await self._close(self.closing)
        except OSError:  # the client is gone (uvicorn's ClientDisconnected is one)
            self._writer = None
            self.abort(Closing(1006, "client gone"))
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _deliver(self, batch: list[Entry]) -> None:
        if self.transport is Transport.SSE:
            await self._send(
                {"type": "http.response.body", "body": sse_chunk(batch), "more_body": True}
            )
        else:
            for entry in batch:
                await self._send(websocket_message(entry))
        self.sent += sum(1 for sequence, _ in batch if sequence != CONTROL)

    async def _close(self, closing: Closing) -> None:
        self._on_end(self, closing)
        if self.transport is Transport.SSE:
            final = frames.sse_control(closing.frame, closing.retry_ms) if closing.frame else b""
            await self._send({"type": "http.response.body", "body": final, "more_body": False})
        else:
            if closing.frame:
                await self._send(websocket_message((CONTROL, closing.frame)))
            await self._send(
                {"type": "websocket.close", "code": closing.code, "reason": closing.reason}
            )

    async def write_now(self, entries: list[Entry]) -> None:
        """Write the replay, from the handler, before any queued event."""
        await self._deliver(entries)
