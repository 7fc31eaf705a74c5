"""Run several independent per-request concerns in ONE pure ASGI layer.

A `Concern` only watches a request go by: it may act when the request arrives
(`on_request`), add or merge headers on the response start (`on_response_start`) and act once
the response is complete (`on_finish`, with the status that went out and the request's
duration). It never answers or rewrites a body; concerns that do (CORS, gzip, the body limit,
the error layer) are layers of their own.

`ComposedMiddleware(app, concerns)` calls those hooks in the order separate layers would, the
first concern outermost: `on_request` in list order, `on_response_start` and `on_finish` in
reverse order (the innermost sees the response first, and the outermost is the last to
finish). One difference: if an `on_request` hook raises, no concern's `on_finish` runs, where
separate layers would still finish the ones outside it; a hook that raises is a bug, and it
reaches the server error layer either way. The composer knows nothing about any concern; it
only saves one layer per concern (a frame, a `send` wrapper and an await per response
message each; docs/edge.md).

Per-request state belongs to the request, never to the concern object (one object serves
every request at once): a concern keeps what it needs in `scope`, under a key of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ResponseHeaders = list[tuple[bytes, bytes]]

# nginx's "client closed request": the client went away before anything was answered. Not a
# server error, so it must not count towards the 5xx ratio an alert pages on.
CLIENT_CLOSED_REQUEST = 499
_CLIENT_GONE = "keel.client_gone"


def mark_client_gone(scope: Scope) -> None:
    """Record that the client went away before any answer: the request finishes as 499."""
    scope[_CLIENT_GONE] = True


class Concern:
    """Override the hooks the concern needs; the layer calls only the overridden ones."""

    def on_request(self, scope: Scope) -> None:
        """Before the app runs (HTTP requests only)."""

    def on_response_start(self, scope: Scope, status: int, headers: ResponseHeaders) -> None:
        """On `http.response.start`, whatever layer below made it; `headers` is a new list
        for this response, mutated in place (append to add, replace to merge)."""

    def on_finish(self, scope: Scope, status: int, seconds: float) -> None:
        """After the app returned or raised. `status` is the status sent; when nothing was,
        499 if the client went away first (`mark_client_gone`), else 500. `seconds` runs from
        before the first `on_request` to after the app."""


def _overriding(concerns: Sequence[Concern], hook: str) -> list[Concern]:
    default = getattr(Concern, hook)
    return [concern for concern in concerns if getattr(type(concern), hook) is not default]


class ComposedMiddleware:
    def __init__(self, app: ASGIApp, *, concerns: Sequence[Concern]) -> None:
        self.app = app
        self._on_request = tuple(c.on_request for c in _overriding(concerns, "on_request"))
        self._on_response_start = tuple(
            c.on_response_start for c in reversed(_overriding(concerns, "on_response_start"))
        )
        self._on_finish = tuple(c.on_finish for c in reversed(_overriding(concerns, "on_finish")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app raises before responding
        on_response_start = self._on_response_start

        async def send_with_hooks(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: the response object's own header list is never mutated.
                headers = list(message.get("headers", ()))
                for hook in on_response_start:
                    hook(scope, status, headers)
                message["headers"] = headers
            await send(message)

        started = perf_counter()
        # Outside the try: a hook that raises is a bug, and the finish hooks of concerns whose
        # request hook never ran must not run either.
        for on_request in self._on_request:
            on_request(scope)
        try:
            await self.app(scope, receive, send_with_hooks)
        finally:
            seconds = perf_counter() - started
            if scope.get(_CLIENT_GONE):
                status = CLIENT_CLOSED_REQUEST
            for on_finish in self._on_finish:
                on_finish(scope, status, seconds)


def as_layers(stack: Sequence[Concern | Middleware | None]) -> list[Middleware]:
    """The stack (outside in) as layers: each run of consecutive concerns becomes ONE
    `ComposedMiddleware`, every `Middleware` stays a layer of its own; `None` (a part switched
    off by the settings) is left out."""
    layers: list[Middleware] = []
    concerns: list[Concern] = []
    for entry in stack:
        if entry is None:
            continue
        if isinstance(entry, Concern):
            concerns.append(entry)
            continue
        if concerns:
            layers.append(Middleware(ComposedMiddleware, concerns=tuple(concerns)))
            concerns = []
        layers.append(entry)
    if concerns:
        layers.append(Middleware(ComposedMiddleware, concerns=tuple(concerns)))
    return layers
