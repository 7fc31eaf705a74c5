"""HTTP metrics: requests by method/route template/status, duration histogram, in progress.

`RequestMetrics` is what `keel.middleware.edge.EdgeMiddleware` calls around every request.
`MetricsMiddleware` is the same concern as a layer of its own, for an app that wants the metrics
and nothing else of Keel's edge (and for unit tests of this concern alone).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.middleware._asgi import route_template
from keel.observability.metrics import KNOWN_METHODS, OTHER_METHOD, Metrics


class RequestMetrics:
    """Counts in plain Python values (`Metrics.observe_request`, `Metrics.in_progress`);
    `Metrics.flush` moves them into prometheus-client's before every scrape and every second."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.observe = metrics.observe_request

    def begin(self) -> None:
        self.metrics.in_progress += 1

    def end(self, scope: Scope, status: int, seconds: float) -> None:
        self.metrics.in_progress -= 1
        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD  # arbitrary methods must not mint label values
        self.observe(method, route_template(scope), status, seconds)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = RequestMetrics(metrics)

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

        self.metrics.begin()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.end(scope, status, time.perf_counter() - started)
