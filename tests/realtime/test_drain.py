"""SIGTERM: every stream is told to reconnect (1001, spread out) and nothing committed is lost."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from keel.settings import Settings
from tests.realtime.clients import SseStream, create_item, open_sse_raw, token_of, ws_next, ws_open
from tests.realtime.stack import Stack, serving, sign_up, wait_until_numbered

pytestmark = pytest.mark.slow

ITEMS = 5


async def test_sigterm_closes_every_stream_1001_and_a_resume_misses_nothing(
    settings: Settings, tmp_path: Path, shared_stack: Stack, database_url: str
) -> None:
    async with (
        serving(settings, tmp_path, REALTIME_MAX_CONNECTIONS_PER_USER="10") as stack,
        httpx.AsyncClient(base_url=stack.base, timeout=10) as client,
    ):
        alice = await sign_up(client, "alice")
        sockets = [await ws_open(stack.ws_url, token_of(alice)) for _ in range(2)]
        streams = [await open_sse_raw(client, alice) for _ in range(2)]
        for title in range(ITEMS):  # committed; the streams may or may not see them
            await create_item(client, alice, f"item {title}")
        stack.terminate_gunicorn()
        over_ws = await asyncio.gather(*(_until_closed_ws(s) for s in sockets))
        over_sse = await asyncio.gather(*(_until_closed_sse(s) for s in streams))
        assert await asyncio.to_thread(stack.gunicorn.wait, 30) == 0
    for _, closing, code in over_ws:
        assert code == 1001
        assert 500 <= closing["retry_after_ms"] <= 10_000
    for _, closing, retry in over_sse:
        assert closing["type"] == "stream.closing"
        assert retry == closing["retry_after_ms"]
    # Another deployment on the same database resumes every stream, once the relay has numbered
    # every item (an unnumbered one would arrive live, after `stream.ready`).
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        owner = uuid.UUID((await client.get("/api/v1/users/me", headers=alice)).json()["id"])
        await wait_until_numbered(database_url, owner, count=ITEMS)
        for seen, _, _ in [*over_ws, *over_sse]:
            resumed = await open_sse_raw(client, alice, last_event_id=seen[-1])
            try:
                seen.extend(await _until_ready(resumed))
            finally:
                await resumed.response.aclose()
            assert len(set(seen[1:])) == ITEMS == len(seen[1:])


async def _until_closed_ws(socket: ClientConnection) -> tuple[list[str], dict[str, Any], int]:
    """(ids: the ready message's, then each event's), the closing message, the close code."""
    seen: list[str] = []
    closing: dict[str, Any] = {}
    try:
        while True:
            message = await ws_next(socket, within=20)
            if message["type"] == "stream.ready":
                seen.append(message["last_event_id"] or "0")
            elif message["type"] == "stream.closing":
                closing = message
            else:
                seen.append(message["id"])
    except ConnectionClosed as closed:
        return seen, closing, closed.rcvd.code if closed.rcvd is not None else 1006


async def _until_closed_sse(stream: SseStream) -> tuple[list[str], dict[str, Any], int | None]:
    seen: list[str] = []
    try:
        while True:
            message = await stream.next(within=20)
            if message.data["type"] == "stream.ready":
                seen.append(message.data["last_event_id"] or "0")
            elif message.data["type"] == "stream.closing":
                return seen, message.data, message.retry
            else:
                assert message.id is not None
                seen.append(message.id)
    finally:
        await stream.response.aclose()


async def _until_ready(stream: SseStream) -> list[str]:
    replayed: list[str] = []
    while True:
        message = await stream.next()
        if message.data["type"] == "stream.ready":
            return replayed
        assert message.id is not None
        replayed.append(message.id)
