"""JSON request bodies parsed by orjson.

FastAPI parses a JSON body with `await request.json()`, which is the standard library's
`json.loads` on the event loop. orjson parses the same documents two to three times faster
(a 1 MiB body of 92,000 keys: 61 ms against 26 ms, measured). That matters most
for the bodies nobody should send: the larger the body, the longer every other request waits.
FastAPI's handler needs no change: orjson's JSONDecodeError is a `json.JSONDecodeError`, so
a malformed body is still its 422 `json_invalid`. orjson is stricter than the standard library
where JSON itself is: NaN, Infinity, integers beyond 64 bits and lone surrogates are refused
as malformed JSON (422) instead of reaching validation.

Bodies of `THREAD_MINIMUM_SIZE` and more are parsed on a thread of their own. orjson keeps the
GIL while it parses, so this does not make one parse cheaper for the loop; it makes the loop
wait for one parse at most. On the loop, four such bodies arriving together were parsed back
to back, and a /livez behind them waited for all four (over 100 ms: the block detector's
threshold). One thread, not a pool: parses hold the GIL, so more threads would not run them
sooner, and between two parses the waiting loop takes its turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# About a millisecond of parsing at worst, where a thread hop (~0.05 ms) pays for itself.
THREAD_MINIMUM_SIZE = 64 * 1024
_PARSING_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-json")


class JSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = await parse_json(await self.body())
        return self._json


async def parse_json(body: bytes) -> Any:
    if len(body) < THREAD_MINIMUM_SIZE:
        return orjson.loads(body)
    return await asyncio.get_running_loop().run_in_executor(_PARSING_THREAD, orjson.loads, body)


def parsing_json_with_orjson(handler: Handler) -> Handler:
    """`handler`, given a request whose `json()` is orjson's (for routes that read a body)."""

    async def handle(request: Request) -> Response:
        return await handler(JSONRequest(request.scope, request.receive))

    return handle
