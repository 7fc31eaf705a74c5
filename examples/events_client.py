"""A small client of the events stream (docs/realtime.md): sign in, open the WebSocket,
authenticate in the first message, print each event, and after every close reconnect from the
last event id it saw.

    KEEL_EMAIL=you@example.com KEEL_PASSWORD=... \\
        python examples/events_client.py --api http://127.0.0.1:8000 --seconds 60

It stops by itself after --seconds, or after --max-events events. It needs httpx and
websockets, both dependencies of the service itself. Copy it and replace the `print` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

EVENTS_PATH = "/api/v1/events"
# Reconnecting without a hint from the server: 0.5 s, 1 s, 2 s ... up to 30 s, each jittered,
# so that clients dropped together do not come back together.
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
# HTTP refusals of the handshake worth retrying (the others are a bug or a wrong setting).
RETRY_STATUSES = {429, 503}


class SessionRevoked(Exception):
    """Logged out, password changed or account deactivated: the user must sign in again."""


@dataclass
class Cursor:
    """What survives a reconnect."""

    last_event_id: str | None = None
    received: int = 0
    retry_after_ms: int | None = None  # the server's hint (`stream.closing`), for this close


async def sign_in(api: str, email: str, password: str) -> str:
    """An access token (a real app would keep its refresh token and use it instead)."""
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        response = await client.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


def websocket_url(api: str) -> str:
    # http://host -> ws://host, https://host -> wss://host
    return "ws" + api.rstrip("/").removeprefix("http") + EVENTS_PATH


def backoff(failures: int) -> float:
    ceiling: float = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** min(failures, 10))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


def handle(message: dict[str, Any], cursor: Cursor) -> None:
    """One frame: a domain event, or a control message (types under `stream.`)."""
    kind = message["type"]
    if kind == "stream.ready":
        # Replayed events (if any) came before this; live ones follow. Its `last_event_id` is
        # where a stream opened without one starts: remember it too.
        cursor.last_event_id = message.get("last_event_id") or cursor.last_event_id
        print(f"ready (last event id {cursor.last_event_id})", flush=True)
    elif kind == "stream.gap":
        # Events after our id are no longer kept: a real app refetches what it shows.
        print(f"gap: events after {message['last_event_id']} are gone; refetch", flush=True)
    elif kind == "stream.closing":
        cursor.retry_after_ms = int(message["retry_after_ms"])
    elif kind == "stream.closed":
        raise SessionRevoked(message.get("reason", "session revoked"))
    else:
        cursor.last_event_id = message["id"]
        cursor.received += 1
        data = json.dumps(message["data"], sort_keys=True)
        print(f"event {message['id']} {kind} {data}", flush=True)


async def follow(
    api: str, email: str, password: str, cursor: Cursor, max_events: int | None
) -> None:
    url = websocket_url(api)
    token = await sign_in(api, email, password)
    failures = 0
    while max_events is None or cursor.received < max_events:
        cursor.retry_after_ms = None
        ready = False
        try:
            async with connect(url, open_timeout=10) as websocket:
                first: dict[str, str] = {"token": token}
                if cursor.last_event_id is not None:
                    first["last_event_id"] = cursor.last_event_id
                await websocket.send(json.dumps(first))
                while max_events is None or cursor.received < max_events:
                    message = json.loads(await websocket.recv())
                    handle(message, cursor)
                    if message["type"] == "stream.ready":
                        ready, failures = True, 0
                return  # --max-events reached; leaving `connect` closes with 1000
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else 1006
            reason = closed.rcvd.reason if closed.rcvd is not None else "no close frame"
            print(f"closed {code} {reason!r}", flush=True)
            if code == 1008 and not ready:  # the token was refused (expired): a new one
                token = await sign_in(api, email, password)
        except InvalidStatus as refused:  # the handshake's HTTP refusal
            status = refused.response.status_code
            print(f"refused {status}", flush=True)
            if status == 401:
                token = await sign_in(api, email, password)
            elif status not in RETRY_STATUSES:
                raise
            retry_after = refused.response.headers.get("Retry-After", "")
            if retry_after.isdigit():
                cursor.retry_after_ms = int(retry_after) * 1000
        except (OSError, TimeoutError) as error:  # server unreachable, or no handshake in time
            print(f"cannot connect: {error!r}", flush=True)
        if cursor.retry_after_ms is not None:
            delay = cursor.retry_after_ms / 1000
        else:
            delay = backoff(failures)
            failures += 1
        print(f"reconnecting in {round(delay * 1000)} ms from {cursor.last_event_id}", flush=True)
        await asyncio.sleep(delay)


async def run(args: argparse.Namespace, email: str, password: str) -> None:
    cursor = Cursor(last_event_id=args.last_event_id)
    try:
        async with asyncio.timeout(args.seconds):
            await follow(args.api, email, password, cursor, args.max_events)
    except TimeoutError:
        print(f"stopping after {args.seconds} s", flush=True)
    print(f"received {cursor.received}; last event id {cursor.last_event_id}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--api", default=os.environ.get("KEEL_API", "http://127.0.0.1:8000"))
    parser.add_argument("--email", default=os.environ.get("KEEL_EMAIL"))
    parser.add_argument("--password", default=os.environ.get("KEEL_PASSWORD"))
    parser.add_argument("--last-event-id", help="resume after this id (from an earlier run)")
    parser.add_argument("--max-events", type=int, help="stop after this many events")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    args = parser.parse_args(argv)
    if not args.email or not args.password:
        parser.error("--email and --password (or KEEL_EMAIL and KEEL_PASSWORD) are required")
    try:
        asyncio.run(run(args, args.email, args.password))
    except SessionRevoked as revoked:
        print(f"stream closed: {revoked}; sign in again", flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
