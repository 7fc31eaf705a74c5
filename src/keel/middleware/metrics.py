"""HTTP metrics: requests by method/route template/status, duration histogram, in progress.

`RequestMetrics` is what `keel.middleware.edge.EdgeMiddleware` calls around every request.
"""

from __future__ import annotations

from starlette.types import Scope

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
