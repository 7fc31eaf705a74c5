"""Drive a middleware as a plain ASGI callable: build a scope, feed a body, collect the reply."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.middleware.composed import ComposedMiddleware, Concern


def http_scope(
    method: str = "GET",
    path: str = "/things",
    headers: Iterable[tuple[str, str]] = (),
    **extra: Any,
) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("203.0.113.7", 50000),
        "server": ("127.0.0.1", 8000),
        **extra,
    }


@dataclass
class Reply:
    messages: list[Message] = field(default_factory=list)

    @property
    def start(self) -> Message:
        return next(m for m in self.messages if m["type"] == "http.response.start")

    @property
    def status(self) -> int:
        status: int = self.start["status"]
        return status

    def headers(self, name: str) -> list[str]:
        wanted = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.start["headers"] if k.lower() == wanted]

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )


async def call(app: ASGIApp, scope: Scope, body: Sequence[bytes] = (b"",)) -> Reply:
    chunks = list(body)
    reply = Reply()

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        reply.messages.append(message)

    await app(scope, receive, send)
    return reply


def responder(
    status: int = 200,
    headers: Sequence[tuple[bytes, bytes]] = ((b"content-type", b"application/json"),),
    body: bytes = b"{}",
) -> ASGIApp:
    """An inner app that reads the whole request body, then answers."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received = b""
        more = True
        while more:
            message = await receive()
            received += message.get("body", b"")
            more = message.get("more_body", False)
        scope.setdefault("state", {})["received"] = received
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})

    return app


def composed(app: ASGIApp, *concerns: Concern) -> ComposedMiddleware:
    """`app` behind one layer running `concerns` (the first one outermost)."""
    return ComposedMiddleware(app, concerns=concerns)
