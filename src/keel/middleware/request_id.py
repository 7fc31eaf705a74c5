"""Request ID: accept a safe incoming `X-Request-ID` or make one; echo it on every response."""

from __future__ import annotations

import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.observability.context import accept_request_id, request_id_var

_HEADER = b"x-request-id"


class RequestIDMiddleware:
    """Outermost of Keel's layers, so every response below it (413, 500, preflight) carries it.

    For the duration of the request the id is in `scope["state"]["request_id"]` (read by the
    problem documents and the access log), in structlog's contextvars (every log line) and in
    `keel.observability.context.request_id_var` (outbound httpx calls, enqueued jobs); all three
    are cleared when the request ends. With tracing on it is also set on the server span.
    """

    def __init__(self, app: ASGIApp, *, tracing: bool = False) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        raw = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                raw = value
                break
        request_id = accept_request_id(raw)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        response_header = (_HEADER, request_id.encode("latin-1"))
        if self.tracing:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute("request_id", request_id)

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new list: the response object's own header list is never mutated.
                message["headers"] = [*message.get("headers", ()), response_header]
            await send(message)

        var_token = request_id_var.set(request_id)
        log_tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            structlog.contextvars.reset_contextvars(**log_tokens)
            request_id_var.reset(var_token)
            if "user_id" in state:  # bound by keel.observability.context.bind_user_id
                structlog.contextvars.unbind_contextvars("user_id")
