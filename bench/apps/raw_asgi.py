"""Reference: the limit for any Python ASGI app. One hand-written ASGI callable, no framework.

It answers /livez with the same JSON body as Keel and bare FastAPI, and 404 to anything else.
Lifespan events are acknowledged so uvicorn starts it like the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_OK_BODY = b'{"status":"ok"}'
_OK_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_OK_BODY)).encode()),
]
_NOT_FOUND_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"9")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/livez":
        await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
        await send({"type": "http.response.body", "body": _OK_BODY})
        return
    await send({"type": "http.response.start", "status": 404, "headers": _NOT_FOUND_HEADERS})
    await send({"type": "http.response.body", "body": b"not found"})
