"""Request metrics: every response counted by method, route template and status, with its
duration, and the requests in progress (`keel.observability.metrics.Metrics`, plain counts the
app flushes into prometheus-client).

Outside the layers that answer themselves (CORS, body limit, error layer), so their responses
are counted too; an app that raised before responding counts as 500, a client that went away
before any answer as 499 (`keel.middleware.composed`).
"""

from __future__ import annotations

from starlette.types import Scope

from keel.middleware.composed import Concern
from keel.middleware.route import route_template
from keel.observability.metrics import Metrics


class RequestMetrics(Concern):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_request(self, scope: Scope) -> None:
        self.metrics.in_progress += 1

    def on_finish(self, scope: Scope, status: int, seconds: float) -> None:
        metrics = self.metrics
        metrics.in_progress -= 1
        metrics.observe_request(scope["method"], route_template(scope), status, seconds)
