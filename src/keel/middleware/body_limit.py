"""Request body limit: 413 problem before any route code (authentication included) runs.

* `Content-Length` above the limit: answered at once, the body is never read.
* No `Content-Length` (chunked): the body is read here, at most `limit` bytes are buffered, and
  the request is answered 413 as soon as it goes past; otherwise the app receives the buffered
  body. So the route's dependencies (authentication) only ever run for a body within the limit.

Why not Starlette's `max_body_size`: it checks while the *app* reads the body, so a dependency
that runs before the body is read (authentication on a route reading `request.stream()`) runs
first, and its 413 is `text/plain`, not a problem document.

Limit: the default (setting `MAX_BODY_SIZE`, 1 MiB), or a route's own `max_body_size`
(FastAPI >= 0.165: `@router.post(..., max_body_size=10 * 1024 * 1024)`, or on an APIRouter).
A 413 closes the connection (`Connection: close`): the unread rest of the body cannot be
skipped on a keep-alive connection.

A route whose endpoint carries `streams_body = True` (an upload streamed somewhere as it
arrives) is passed its body unbuffered: it enforces its own limit as it reads, and a chunked
upload of a gigabyte must not be held here first.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fastapi.routing import RouteContext, iter_route_contexts
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.middleware.composed import mark_client_gone
from keel.problems import payload_too_large_response

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
# The limit of a route that streams its body: none here, the route enforces its own.
STREAMED = sys.maxsize


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_size: int,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.app = app
        self.default = max_body_size
        self._source = routes
        self._routes: list[tuple[RouteContext, int | None]] | None = None
        self.smallest = max_body_size
        self.has_overrides = False

    def _route_table(self) -> list[tuple[RouteContext, int | None]]:
        """Every route with the limit it resolves to (its own, its APIRouter's, or None),
        flattened through included routers in the order the router tries them.

        Built on first use, not in __init__: the middleware stack is built on the first ASGI
        call (the lifespan), and flattening makes FastAPI build every included router's route
        table, which blocks the loop for 100+ ms. The lifespan warms those tables in a thread
        (keel.main), so this is cheap by the time a request needs it.
        """
        if self._routes is None:
            routes = [
                (context, _declared_limit(context)) for context in iter_route_contexts(self._source)
            ]
            overrides = [limit for _, limit in routes if limit is not None]
            # Below this every route accepts the body: no route lookup, no wrapping.
            self.smallest = min([self.default, *overrides])
            self.has_overrides = bool(overrides)
            self._routes = routes
        return self._routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        content_length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if content_length is None and not chunked and scope["method"] in _BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        await self._limit(scope, receive, send, content_length, chunked)

    async def _limit(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        content_length: bytes | None,
        chunked: bool,
    ) -> None:
        if self._routes is None:
            self._route_table()

        if content_length is not None and not chunked:
            try:
                length = int(content_length)
            except ValueError:
                length = -1
            if 0 <= length <= self.smallest:
                await self.app(scope, receive, send)  # the server enforces Content-Length
                return
            if length >= 0:
                limit = self._limit_for(scope)
                if length > limit:
                    await _reject(scope, receive, send, limit)
                else:
                    await self.app(scope, receive, send)
                return

        limit = self._limit_for(scope)
        if limit == STREAMED:
            await self.app(scope, receive, send)
        else:
            await self._buffered(scope, receive, send, limit)

    async def _buffered(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                mark_client_gone(scope)  # it went away before sending the whole body
                return
            body: bytes = message.get("body", b"")
            total += len(body)
            if total > limit:
                await _reject(scope, receive, send, limit)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _limit_for(self, scope: Scope) -> int:
        """The limit of the route the router will pick: the first full match, in order."""
        if not self.has_overrides:
            return self.default
        for context, limit in self._route_table():
            match, _ = context.matches(scope)
            if match is Match.FULL:
                return self.default if limit is None else limit
        return self.default


def _declared_limit(context: RouteContext) -> int | None:
    if getattr(context.endpoint, "streams_body", False):
        return STREAMED
    try:
        limit = context.max_body_size
    except AttributeError:
        return None
    return limit if isinstance(limit, int) else None


async def _reject(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = payload_too_large_response(Request(scope), limit)
    await response(scope, receive, send)
