"""The edge layer: request id, access log, metrics, security and cache headers in ONE layer.

These five concerns run on every request and every response start. As five pure-ASGI layers
they cost five `__call__` frames, five `send` closures and five more awaits per response message
(measured: 28k more instructions per /livez request than this one layer, a quarter of the edge
stack's cost over bare FastAPI; docs/edge.md). Here they share one frame, one `send` wrapper and
one clock, while each concern's logic stays in its own module (`request_id`, `access_log`,
`metrics`, `security`, `cache`); this module only sequences them.

Per request the layer scans the request headers once (X-Request-ID, and whether the request
carries credentials, which the cache policy needs) and, on the response start, the response's
headers once: when the response set none of the cache or security headers itself (the common
case) the precomputed lists are appended as they are; otherwise each concern merges its own.

Order inside the layer, and why:

* the request id is bound first and released last, so every log line of the request (the
  access log line included) carries it, and it is echoed on every response start;
* metrics and the access log share one start time taken before the app runs, and read the
  status of the response that actually went out (500 when the app raised before responding),
  after the app returned: they see the whole duration and the final status;
* security and cache headers are merged into every response start, whatever made it (the route,
  the problem handlers, the body limit's 413, the error layer's 500, CORS).
"""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.middleware import cache, request_id
from keel.middleware._asgi import route_template
from keel.middleware.access_log import AccessLog
from keel.middleware.security import SecurityHeaders
from keel.observability.metrics import Metrics

_REQUEST_ID = request_id.HEADER
_CREDENTIALS = cache.CREDENTIALS


class EdgeMiddleware:
    """Every concern but the request id is optional, so each can be tested on its own;
    `install_middleware` switches all of them on (metrics when the app has them)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracing: bool = False,
        access_log: AccessLog | None = None,
        metrics: Metrics | None = None,
        security: SecurityHeaders | None = None,
        cache_headers: bool = False,
    ) -> None:
        self.app = app
        self.tracing = tracing
        self.access_log = access_log
        self.metrics = metrics
        self.security = security
        self.cache_headers = cache_headers
        # Response headers that, when the response set them itself, need merging.
        watched: set[bytes] = set()
        if cache_headers:
            watched |= cache.NAMES
        if security is not None:
            watched |= security.names
        self.watched = frozenset(watched)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        raw_id: bytes | None = None
        credentialed = False
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                if raw_id is None:
                    raw_id = value
            elif name in _CREDENTIALS:
                credentialed = True
        rid = request_id.accept_request_id(raw_id)
        token = request_id.bind(scope, rid, tracing=self.tracing)
        request_id_header = (_REQUEST_ID, rid.encode("latin-1"))
        security = self.security
        cache_headers = self.cache_headers
        watched = self.watched
        status = 500  # what the server answers if the app raises before responding

        async def send_with_edge_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: the response object's own header list is never mutated.
                headers = list(message.get("headers", ()))
                for name, _ in headers:
                    if name in watched:  # the response set some itself: merge
                        if cache_headers:
                            cache.add_cache_headers(headers, scope, status, credentialed)
                        if security is not None:
                            security.add_to(headers, scope["path"])
                        break
                else:  # the common case: append what was built once
                    if cache_headers:
                        headers += cache.default_cache_headers(scope, status, credentialed)
                    if security is not None:
                        headers += security.for_path(scope["path"])
                headers.append(request_id_header)
                message["headers"] = headers
            await send(message)

        metrics = self.metrics
        access_log = self.access_log
        try:
            if metrics is not None:
                metrics.in_progress += 1
            started = perf_counter()
            try:
                await self.app(scope, receive, send_with_edge_headers)
            finally:
                seconds = perf_counter() - started
                route = route_template(scope)
                if metrics is not None:
                    metrics.in_progress -= 1
                    metrics.observe_request(scope["method"], route, status, seconds)
                if access_log is not None:
                    access_log.record(scope, route, status, seconds)
        finally:
            request_id.release(scope, token)
