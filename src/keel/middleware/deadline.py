"""A deadline for every request: still running when it passes, the request is cancelled and
answered 503 (504 when it was waiting on an upstream HTTP call), with Retry-After.

Each dependency has its own timeouts, but they add up (a pool wait, a dead connection retried,
a statement) and some waits have none that a blackholed network would trip in time. The deadline
bounds the whole request: `REQUEST_DEADLINE_SECONDS` (default 1.5 s, so a database or Redis that
stops answering costs a client less than 2 s; 0 switches it off). A route that needs longer says
so with `dependencies=[deadline(seconds)]` (keel.api.deps), which moves its deadline to that many
seconds after the request started.

The request is cancelled where it waits, in its own task: the database layer closes (never
pools) a connection whose statement was cut short, so PostgreSQL rolls its transaction back and
nothing is half-written. A response that has already started cannot be replaced: the
cancellation is re-raised and the server cuts the connection.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.errors import AppError, DeadlineExceeded, UpstreamTimeout
from keel.problems import render_app_error
from keel.upstream import cancelled_while_calling_upstream

# The request's `asyncio.Timeout` and the loop time it started, kept in its scope.
DEADLINE_KEY = "keel.deadline"


def extend_deadline(scope: Scope, seconds: float) -> None:
    """Move this request's deadline to `seconds` after it started (longer or shorter)."""
    bound = scope.get(DEADLINE_KEY)
    if bound is not None:
        timeout, started = bound
        timeout.reschedule(started + seconds)


class RequestDeadline:
    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        loop_time = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout_at(loop_time + self.seconds) as timeout:
                scope[DEADLINE_KEY] = (timeout, loop_time)
                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if started or not timeout.expired():
                raise
            seconds = (timeout.when() or loop_time) - loop_time
            await render_app_error(Request(scope), _error(seconds))(scope, receive, send)


def _error(seconds: float) -> AppError:
    if cancelled_while_calling_upstream():
        return UpstreamTimeout(seconds)
    return DeadlineExceeded(seconds)
