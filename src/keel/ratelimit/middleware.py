"""The limiter at the edge: a pure ASGI middleware, innermost of the app's middleware.

It runs before routing, so it finds the route itself (the route table, in the router's order,
then a bounded cache by method and path): that way a refused request costs no body parsing,
no authentication and no database transaction. Exempt paths cost one dict lookup.

* Allowed: the response gets `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
  (seconds until the window resets; draft-ietf-httpapi-ratelimit-headers).
* Refused: 429 problem+json (`keel.errors.TooManyRequests`, rendered by `keel.problems`
  like every other error) with `Retry-After` and the same headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.requests import Request
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.errors import TooManyRequests
from keel.problems import render_app_error
from keel.ratelimit.limiter import Decision, Limiter, RoutePlan
from keel.ratelimit.storage import reset_seconds

MAX_CACHED_PATHS = 4096
UNMATCHED_ROUTE = "unmatched"


@dataclass(frozen=True, slots=True)
class _Route:
    regex: re.Pattern[str]
    methods: frozenset[str] | None
    endpoint: Callable[..., Any] | None
    template: str


class RouteTable:
    """The app's routes as the limiter sees them, in the router's order.

    Built on first use (every router is included by then), rebuilt if routes are added to the
    app later. It reads FastAPI's route contexts (`iter_route_contexts`); building those costs
    ~100 ms once per app, and the body-limit middleware has already built them (cached by
    FastAPI) when the middleware stack is assembled at startup, so this costs ~0.2 ms."""

    def __init__(self, router: Router, limiter: Limiter) -> None:
        self.router = router
        self.limiter = limiter
        self._routes: list[_Route] = []
        self._built_for = -1
        self._plans: dict[tuple[str, str], RoutePlan | None] = {}
        self._by_template: dict[tuple[str, str], RoutePlan | None] = {}

    def build(self) -> None:
        routes: list[_Route] = []
        for context in iter_route_contexts(self.router.routes):
            regex = getattr(context, "path_regex", None)
            template = context.path_format or context.path
            if regex is None or template is None:
                continue
            methods = context.methods
            routes.append(
                _Route(regex, frozenset(methods) if methods else None, context.endpoint, template)
            )
        self._routes = routes
        self._built_for = len(self.router.routes)
        self._plans.clear()
        self._by_template.clear()

    def plan(self, method: str, path: str) -> RoutePlan | None:
        if self._built_for != len(self.router.routes):
            self.build()
        key = (method, path)
        try:
            return self._plans[key]
        except KeyError:
            pass
        plan = self._match(method, path)
        if len(self._plans) >= MAX_CACHED_PATHS:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def plan_for_template(self, method: str, template: str) -> RoutePlan | None:
        """The plan of a route by its template (for the OpenAPI document)."""
        if self._built_for != len(self.router.routes):
            self.build()
        for route in self._routes:
            if route.template == template and (route.methods is None or method in route.methods):
                return self._plan_of(route, method)
        return None

    def _match(self, method: str, path: str) -> RoutePlan | None:
        for route in self._routes:
            if route.regex.match(path) and (route.methods is None or method in route.methods):
                return self._plan_of(route, method)
        # 404 and 405 answers: the default limits, one shared scope.
        return self.limiter.plan(None, UNMATCHED_ROUTE, method)

    def _plan_of(self, route: _Route, method: str) -> RoutePlan | None:
        key = (method, route.template)
        if key not in self._by_template:
            self._by_template[key] = self.limiter.plan(route.endpoint, route.template, method)
        return self._by_template[key]


def route_path(scope: Scope) -> str:
    """The path the router matches: without the app's root_path (as Starlette's router)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if (
        root_path
        and path.startswith(root_path)
        and path[len(root_path) : len(root_path) + 1] == "/"
    ):
        return path[len(root_path) :]
    return path


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: Limiter, routes: RouteTable) -> None:
        self.app = app
        self.limiter = limiter
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        plan = self.routes.plan(scope["method"], route_path(scope))
        if plan is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        state = scope.get("state")
        resources = state.get("resources") if state else None
        guard = getattr(resources, "fast_redis", None)
        # Most requests are decided from the lease without a coroutine (`admit_leased`).
        decision = self.limiter.admit_leased(plan, request, guard)
        if decision is None:
            decision = await self.limiter.check(plan, request, guard)
            if decision is None:
                await self.app(scope, receive, send)
                return
            if not decision.allowed:
                if self.limiter.metrics is not None:
                    self.limiter.metrics.limited.labels(plan.route).inc()
                await self._refuse(decision, request, send)
                return
        headers = _headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, decision: Decision, request: Request, send: Send) -> None:
        limit = decision.limit.limit
        message = limit.error_message
        detail = (message() if callable(message) else message) or (
            f"Rate limit exceeded: {decision.limit.item}."
        )
        reset = reset_seconds(decision.reset_in)
        error = TooManyRequests(reset, detail)
        error.headers.update(
            {
                "RateLimit-Limit": str(decision.amount),
                "RateLimit-Remaining": str(decision.remaining),
                "RateLimit-Reset": str(reset),
            }
        )
        response = render_app_error(request, error)
        await response(request.scope, request.receive, send)


def _headers(decision: Decision) -> tuple[tuple[bytes, bytes], ...]:
    return (
        decision.limit.limit_header,
        (b"ratelimit-remaining", b"%d" % decision.remaining),
        (b"ratelimit-reset", b"%d" % reset_seconds(decision.reset_in)),
    )
