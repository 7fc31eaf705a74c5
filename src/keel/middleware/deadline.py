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

One timer per process checks the requests in flight every 100 ms at most, instead of a timer
per request (`asyncio.timeout` is a timer handle, a heap entry and a cancellation per
request, which on a request as cheap as /livez costs more than the rest of this layer).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.errors import AppError, DeadlineExceeded, UpstreamTimeout
from keel.problems import render_app_error
from keel.upstream import cancelled_while_calling_upstream

# The deadline layer serving this request, for `extend_deadline`.
DEADLINE_KEY = "keel.deadline"


def extend_deadline(scope: Scope, seconds: float) -> None:
    """Move this request's deadline to `seconds` after it started (longer or shorter)."""
    layer = scope.get(DEADLINE_KEY)
    task = asyncio.current_task()
    if isinstance(layer, RequestDeadline) and task is not None:
        layer.move(task, seconds)


class RequestDeadline:
    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        # Checked this often: a request gets at most a quarter of its deadline, or 100 ms, more.
        self._interval = min(0.1, seconds / 4)
        self._due: dict[asyncio.Task[object], float] = {}  # the requests in flight
        self._allowed: dict[asyncio.Task[object], float] = {}  # routes' own deadlines
        self._expired: set[asyncio.Task[object]] = set()  # cancelled by this layer
        self._checking: asyncio.AbstractEventLoop | None = None  # the loop its timer runs on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        loop = asyncio.get_running_loop()
        self._due[task] = loop.time() + self.seconds
        if self._checking is not loop:
            self._checking = loop
            loop.call_later(self._interval, self._cancel_expired)
        scope[DEADLINE_KEY] = self
        try:
            await self.app(scope, receive, send_tracking)
        except asyncio.CancelledError:
            if task not in self._expired or started:
                raise
            task.uncancel()
            await render_app_error(Request(scope), self._error(task))(scope, receive, send)
        finally:
            del self._due[task]
            if self._expired:
                self._expired.discard(task)
            if self._allowed:
                self._allowed.pop(task, None)

    def move(self, task: asyncio.Task[object], seconds: float) -> None:
        due = self._due.get(task)
        if due is not None:
            start = due - self._allowed.get(task, self.seconds)
            self._due[task] = start + seconds
            self._allowed[task] = seconds

    def _cancel_expired(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, due in self._due.items():
            if due <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        # Kept running (a few wake-ups a second) rather than re-armed by the next request: a
        # timer armed per burst of requests costs those requests more than the wake-ups cost.
        loop.call_later(self._interval, self._cancel_expired)

    def _error(self, task: asyncio.Task[object]) -> AppError:
        seconds = self._allowed.get(task, self.seconds)
        if cancelled_while_calling_upstream():
            return UpstreamTimeout(seconds)
        return DeadlineExceeded(seconds)
