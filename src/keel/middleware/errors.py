"""Unhandled exceptions become a 500 problem here, and the connection stays open.

Starlette's ServerErrorMiddleware renders its 500 and then re-raises into the server; uvicorn
then closes the socket, so every other request pipelined or kept alive on that connection fails
(measured). This layer sits just outside the exception handlers: it logs the traceback with the
request id bound, answers with the generic 500 problem (which still passes through every
header, metrics and logging concern above it) and returns normally.

If the response had already started, nothing can be said to the client any more: the exception
is re-raised and the server cuts the connection, which is the only honest signal left.
"""

from __future__ import annotations

import structlog
from opentelemetry import trace  # feature: tracing
from opentelemetry.trace import Status, StatusCode  # feature: tracing
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.middleware.composed import mark_client_gone
from keel.problems import unhandled_error_response

log = structlog.get_logger("keel.errors")


class UnhandledErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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

        try:
            await self.app(scope, receive, send_tracking)
        except ClientDisconnect:
            # The client went away while its body was being read (an upload cut short): no
            # one is left to answer, and it is not the service's error.
            log.info("client disconnected mid-request", method=scope["method"], path=scope["path"])
            if not started:
                mark_client_gone(scope)
        except Exception as exc:
            log.error(
                "unhandled exception",
                method=scope["method"],
                path=scope["path"],
                response_started=started,
                exc_info=exc,
            )
            # feature: tracing
            # With tracing on, the exception is recorded on the server span too.
            span = trace.get_current_span()
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            # end feature: tracing
            if started:
                raise
            response = unhandled_error_response(Request(scope, receive))
            await response(scope, receive, send)
