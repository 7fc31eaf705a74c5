"""Reference: the real-time events stream with nothing but Starlette, redis.asyncio and uvicorn.

The yardstick bench/events.py compares Keel's stream with: no auth, no replay, no metrics, no
middleware; what is left is what any such stream needs. One Redis pub/sub subscription per
process; each event is serialized once per process (one WebSocket text, one SSE message) and
handed to every connection's bounded queue (a deque of REFERENCE_QUEUE_LIMIT frames; a
connection that falls further behind is dropped: WebSocket close 1013, the SSE stream ends).

    GET  /api/v1/events   WebSocket, or SSE with Accept: text/event-stream (the frames of Keel's
                          protocol; the first WebSocket message, {"token": ...}, is read and
                          ignored, so one load client serves both servers)
    POST /publish         the JSON body becomes the `data` of one item.created event of the fixed
                          owner, PUBLISHed with occurred_at = time.time()

Run by bench/events.py under uvicorn with `--ws websockets-sansio`. REDIS_URL and
BENCH_EVENTS_CHANNEL come from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

REFERENCE_QUEUE_LIMIT = 256
CHANNEL = os.environ.get("BENCH_EVENTS_CHANNEL", "keel-bench:reference-events")
SEQUENCE_KEY = f"{CHANNEL}:sequence"
# A WebSocket client has this long to send its first message (the credentials).
FIRST_MESSAGE_TIMEOUT = 10.0
# An idle SSE stream sends a comment this often, so proxies do not time it out.
HEARTBEAT_SECONDS = 15.0
READY = json.dumps({"type": "stream.ready", "last_event_id": None})


@dataclass(frozen=True, slots=True)
class Frame:
    """One event, serialized once per process for every connection of either kind."""

    text: str
    sse: bytes


class Connection:
    """One client's bounded queue; `wakeup` is set whenever its writer has something to do."""

    __slots__ = ("overflowed", "queue", "wakeup")

    def __init__(self) -> None:
        self.queue: deque[Frame] = deque()
        self.wakeup = asyncio.Event()
        self.overflowed = False

    def push(self, frame: Frame) -> None:
        if len(self.queue) >= REFERENCE_QUEUE_LIMIT:
            # A slow consumer is dropped instead of buffering without bound.
            self.overflowed = True
        else:
            self.queue.append(frame)
        self.wakeup.set()


connections: set[Connection] = set()
state: dict[str, Any] = {}


def frame_of(message: bytes) -> Frame:
    event = json.loads(message)
    occurred = datetime.fromtimestamp(event["occurred_at"], UTC).isoformat()
    text = json.dumps({**event, "occurred_at": occurred})
    return Frame(text, f"id: {event['id']}\ndata: {text}\n\n".encode())


async def relay(redis: Redis) -> None:
    """The process's one subscription: every message goes to every connection's queue."""
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(CHANNEL)
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            frame = frame_of(message["data"])
            for connection in tuple(connections):
                connection.push(frame)


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    subscriber = asyncio.create_task(relay(redis))
    state["redis"] = redis
    try:
        yield
    finally:
        subscriber.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await subscriber
        await redis.aclose()


async def publish(request: Request) -> Response:
    data = await request.json()
    redis: Redis = state["redis"]
    event_id = await redis.incr(SEQUENCE_KEY)
    event = {"id": str(event_id), "type": "item.created", "data": data, "occurred_at": time.time()}
    await redis.publish(CHANNEL, json.dumps(event))
    return JSONResponse({"id": str(event_id)}, status_code=201)


async def watch_for_disconnect(websocket: WebSocket) -> None:
    """Reads (and ignores) what the client sends, so a client that left is noticed at once."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def websocket_events(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        async with asyncio.timeout(FIRST_MESSAGE_TIMEOUT):
            await websocket.receive_text()  # the credentials: this app has no auth
    except (TimeoutError, WebSocketDisconnect):
        return
    connection = Connection()
    connections.add(connection)
    reader = asyncio.create_task(watch_for_disconnect(websocket))
    reader.add_done_callback(lambda _: connection.wakeup.set())
    try:
        await websocket.send_text(READY)
        await send_frames(websocket, connection, reader)
    except WebSocketDisconnect:
        pass
    finally:
        connections.discard(connection)
        reader.cancel()


async def send_frames(
    websocket: WebSocket, connection: Connection, reader: asyncio.Task[None]
) -> None:
    while not reader.done():
        await connection.wakeup.wait()
        connection.wakeup.clear()
        if connection.overflowed:
            await websocket.close(code=1013)
            return
        while connection.queue:
            await websocket.send_text(connection.queue.popleft().text)


async def sse_messages() -> AsyncIterator[bytes]:
    connection = Connection()
    connections.add(connection)
    try:
        yield f"data: {READY}\n\n".encode()
        while not connection.overflowed:
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    await connection.wakeup.wait()
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            connection.wakeup.clear()
            while connection.queue and not connection.overflowed:
                yield connection.queue.popleft().sse
    finally:
        connections.discard(connection)


async def sse_events(request: Request) -> Response:
    if "text/event-stream" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": "Accept: text/event-stream"}, status_code=406)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(sse_messages(), media_type="text/event-stream", headers=headers)


async def livez(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        # Same path, told apart by the scope's type: a WebSocket upgrade or a plain GET.
        WebSocketRoute("/api/v1/events", websocket_events),
        Route("/api/v1/events", sse_events),
        Route("/publish", publish, methods=["POST"]),
        Route("/livez", livez),
    ],
    lifespan=lifespan,
)
