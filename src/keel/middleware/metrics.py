"""HTTP metrics: requests by method/route template/status, duration histogram, in progress."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.middleware._asgi import route_template
from keel.observability.metrics import KNOWN_METHODS, OTHER_METHOD, Metrics


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.in_progress = metrics.in_progress_value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        status = 500  # the app raised before responding: the server answers 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_progress.inc(1)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            self.in_progress.inc(-1)
            method = scope["method"]
            if method not in KNOWN_METHODS:
                method = OTHER_METHOD  # arbitrary methods must not mint label values
            self.metrics.observe_request(method, route_template(scope), status, elapsed)
