"""Rate limits: slowapi's programming model on `limits`' asyncio Redis storage, failing open.

Declare limits on endpoints with `limit` / `shared_limit` / `exempt`; `install_rate_limiting`
(called once by `keel.main.create_app`) builds the app's `Limiter` and its middleware. See
docs/resilience.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI

from keel.auth.schemes import BEARER, TokenScheme
from keel.problems import PROBLEM_FORMAT, ErrorFormat, ErrorFormats
from keel.ratelimit.keys import ClientKey
from keel.ratelimit.limiter import Limiter, exempt, limit, shared_limit
from keel.ratelimit.middleware import RateLimitMiddleware, RouteTable
from keel.settings import Settings

__all__ = [
    "ClientKey",
    "Limiter",
    "exempt",
    "install_rate_limiting",
    "limit",
    "shared_limit",
]

_HEADER = {"schema": {"type": "integer"}}


def too_many_requests_response(format_: ErrorFormat = PROBLEM_FORMAT) -> dict[str, Any]:
    return {
        "description": "Rate limit exceeded; retry after Retry-After seconds",
        "headers": {
            "Retry-After": _HEADER,
            "RateLimit-Limit": _HEADER,
            "RateLimit-Remaining": _HEADER,
            "RateLimit-Reset": _HEADER,
        },
        "content": {format_.media_type: {"schema": format_.model.model_json_schema()}},
    }


_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


def install_rate_limiting(
    app: FastAPI, settings: Settings, schemes: Iterable[TokenScheme] = (BEARER,)
) -> Limiter:
    """The app's limiter (`app.state.limiter`, slowapi's convention) and, when enabled, its
    middleware. Call after the routers are included and before the other middleware, so the
    limiter is the innermost layer: its 429s get the request id, access log, metrics and
    security headers like any response, and a body over the size limit is refused first.
    `schemes`: where the app's API surfaces read access tokens (callers are keyed on them)."""
    metrics = getattr(app.state, "metrics", None)
    registry = metrics.registry if metrics is not None else None
    limiter = Limiter(settings, registry=registry, schemes=schemes)
    app.state.limiter = limiter
    if not limiter.enabled:
        return limiter
    routes = RouteTable(app.router, limiter)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, routes=routes)
    _document_429(app, routes)
    return limiter


def _document_429(app: FastAPI, routes: RouteTable) -> None:
    """Every operation that can answer 429 says so in the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        formats = getattr(app.state, "error_formats", None) or ErrorFormats({})
        for template, operations in schema.get("paths", {}).items():
            too_many = too_many_requests_response(formats.for_path(template))
            for method, operation in operations.items():
                if method not in _METHODS:
                    continue
                if routes.plan_for_template(method.upper(), template) is not None:
                    _add_429(operation.setdefault("responses", {}), too_many)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_429(responses: dict[str, Any], too_many: dict[str, Any]) -> None:
    """The limiter's 429, or its headers added to the route's own 429 (the login's, for one),
    whose description says more."""
    declared = responses.get("429")
    if declared is None:
        responses["429"] = too_many
    else:
        declared["headers"] = {**too_many["headers"], **declared.get("headers", {})}
