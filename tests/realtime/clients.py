"""Minimal clients of the events stream, for tests: SSE over httpx, WebSocket over websockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

EVENTS = "/api/v1/events"


@dataclass(frozen=True)
class SseMessage:
    id: str | None
    data: dict[str, Any]
    retry: int | None = None


class SseStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, within: float = 10.0) -> SseMessage:
        """The next message (heartbeat comments skipped); fails after `within` seconds."""
        async with asyncio.timeout(within):
            while True:
                message = await self._block()
                if message is not None:
                    return message

    async def _block(self) -> SseMessage | None:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if not line:
                break
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        else:
            raise EOFError("the stream ended")
        if "data" not in fields:
            return None
        retry = int(fields["retry"]) if "retry" in fields else None
        return SseMessage(fields.get("id"), json.loads(fields["data"]), retry)

    async def events(self, count: int, within: float = 10.0) -> list[SseMessage]:
        """The next `count` domain events (control messages skipped)."""
        received: list[SseMessage] = []
        while len(received) < count:
            message = await self.next(within)
            if not message.data["type"].startswith("stream."):
                received.append(message)
        return received


@asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> AsyncIterator[SseStream]:
    """An admitted SSE stream, after its `stream.ready`."""
    async with client.stream("GET", EVENTS, headers=headers, params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = SseStream(response)
        first = await stream.next()
        while first.data["type"] == "stream.gap" or first.id is not None:
            first = await stream.next()  # the gap signal or replayed events come first
        yield stream


async def open_sse_raw(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> SseStream:
    request = client.build_request("GET", EVENTS, headers=headers, params=params)
    response = await client.send(request, stream=True)
    return SseStream(response)


async def ws_open(url: str, token: str, **fields: str) -> ClientConnection:
    """A WebSocket authenticated in its first message; returns after `stream.ready`."""
    socket = await connect(url, open_timeout=10)
    await socket.send(json.dumps({"token": token, **fields}))
    return socket


async def ws_next(socket: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        raw = await socket.recv()
    value: dict[str, Any] = json.loads(raw)
    return value


async def ws_events(
    socket: ClientConnection, count: int, within: float = 10.0
) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    while len(received) < count:
        message = await ws_next(socket, within)
        if not message["type"].startswith("stream."):
            received.append(message)
    return received


async def create_item(
    client: httpx.AsyncClient, headers: dict[str, str], title: str
) -> dict[str, Any]:
    created = await client.post("/api/v1/items", json={"title": title}, headers=headers)
    assert created.status_code == 201, created.text
    item: dict[str, Any] = created.json()
    return item


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")
