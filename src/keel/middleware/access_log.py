"""Access log: one structured line per request, and nothing a client would not want logged.

Fields: method, route (template), path (without the query string, which may carry tokens),
status, duration_ms, request_id, client, user_id (when the auth dependency bound one) and what
the logging processors add (keel.observability.logging). Never headers, cookies, query strings
or bodies.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import structlog
from starlette.types import Scope

from keel.middleware.composed import Concern
from keel.middleware.route import route_template


class AccessLog(Concern):
    """Written once the response is complete, while the request id is still bound (the request
    id concern is outside this one), with the final status and the whole duration."""

    def __init__(
        self,
        *,
        skip_paths: Iterable[str] = (),
        skip_sample_rate: float = 0.0,
        logger: Any = None,
    ) -> None:
        self.skip_paths = frozenset(skip_paths)
        self.skip_sample_rate = skip_sample_rate
        self.logger = logger if logger is not None else structlog.get_logger("keel.access")

    def on_finish(self, scope: Scope, status: int, seconds: float) -> None:
        if (
            scope["path"] not in self.skip_paths
            or status >= 400
            # Health and metrics endpoints: a sample (0.0 = none), but their failures always.
            or (self.skip_sample_rate > 0 and random.random() < self.skip_sample_rate)  # noqa: S311
        ):
            self._log(scope, status, seconds)

    def _log(self, scope: Scope, status: int, seconds: float) -> None:
        state = scope.get("state") or {}
        client = scope.get("client")
        fields: dict[str, Any] = {
            "method": scope["method"],
            "route": route_template(scope),
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "request_id": state.get("request_id"),
            "client": client[0] if client else None,
        }
        user_id = state.get("user_id")
        if user_id is not None:
            fields["user_id"] = user_id
        if status >= 500:
            self.logger.error("request", **fields)
        else:
            self.logger.info("request", **fields)
