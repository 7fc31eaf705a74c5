"""Routers included as one flat route table of `PlannedRoute`s.

`include_flat(app, router, prefix=...)` is `app.include_router(router, prefix=...)` with the
same arguments and the same result for every route (FastAPI itself merges prefixes, tags,
router-level dependencies, responses, callbacks, response classes and body limits), after which
each of the router's routes is registered on the app directly. FastAPI 0.165 keeps an included
router nested and matches it again at request time, a second pass over its routes for every
request that reaches them; flat routes are matched in one scan (docs/performance.md).

The routes are `PlannedRoute`s: FastAPI's `APIRoute`, whose dependencies are solved by a plan
compiled once (`keel.kit.dependency_plan`) whenever the plan can reproduce FastAPI exactly, and
by FastAPI's own solver otherwise, and while `app.dependency_overrides` replaces one of the
route's dependencies (tests).

Included as FastAPI includes them (nested), because a flat copy would lose something: routers
holding anything but plain `APIRoute`s (websockets, mounts, a custom `route_class`, frontend
routes). Also not carried over: form limits declared on a router nested inside the one passed
here (include such a router with its own `include_flat` call), and routes added to a router
after it was included (FastAPI would pick those up; include the router once it is complete).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute, APIRouter, RouteContext, iter_route_contexts
from starlette.requests import Request
from starlette.responses import Response

from keel.kit.dependency_plan import DependencyPlan, compile_plan

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# APIRoute's arguments that a route context does not hold under the same name.
_NOT_ON_CONTEXT = frozenset({"self", "path", "endpoint", "form_limits"})


class PlannedRoute(APIRoute):
    """An `APIRoute` whose dependencies are solved by a compiled plan when possible."""

    plan: DependencyPlan | None = None  # None: FastAPI's own solver serves this route

    def get_route_handler(self) -> Handler:
        fastapi_handler = super().get_route_handler()
        plan = self.plan = compile_plan(self.dependant)
        if plan is None:
            return fastapi_handler
        planned_handler = self._handler_for(plan)
        overrides = self.dependency_overrides_provider

        async def handle(request: Request) -> Response:
            replaced = overrides.dependency_overrides if overrides is not None else None
            if replaced and not plan.calls.isdisjoint(replaced):
                return await fastapi_handler(request)
            return await planned_handler(request)

        return handle

    def _handler_for(self, plan: DependencyPlan) -> Handler:
        """FastAPI's handler around an endpoint that takes the request and the response only
        and gets everything else from the plan: FastAPI still reads no body here, serializes
        the return value with the route's response model and merges the response's headers."""
        endpoint = self.dependant.call
        assert endpoint is not None

        async def planned_endpoint(request: Request, response: Response) -> Any:
            return await endpoint(**await plan.solve(request, response))

        # Named as the endpoint in FastAPI's errors (not `__wrapped__`: FastAPI would then read
        # the endpoint's signature and solve its parameters itself).
        planned_endpoint.__name__ = getattr(endpoint, "__name__", planned_endpoint.__name__)
        planned_endpoint.__qualname__ = getattr(
            endpoint, "__qualname__", endpoint.__class__.__name__
        )

        declared = self.dependant
        self.dependant = get_dependant(path=self.path_format, call=planned_endpoint)
        try:
            return super().get_route_handler()
        finally:
            self.dependant = declared


def include_flat(app: FastAPI, router: APIRouter, **include_options: Any) -> None:
    """`app.include_router(router, **include_options)`, its routes then registered flat."""
    app.include_router(router, **include_options)
    included = app.router.routes.pop()
    contexts = list(iter_route_contexts([included]))
    if _has_frontend(included) or not all(type(c.original_route) is APIRoute for c in contexts):
        app.router.routes.append(included)
        return
    limits = {**(include_options.get("form_limits") or {}), **router.form_limits}
    for context in contexts:
        app.router.routes.append(_flat_route(context, limits))


def _has_frontend(included: Any) -> bool:
    """Frontend routes (`router.frontend(...)`, in this router or one it includes) are matched
    after every other route, outside the route table `iter_route_contexts` walks."""
    low_priority = getattr(included, "effective_low_priority_routes", None)
    return low_priority is not None and bool(low_priority())


def route_arguments(context: RouteContext) -> dict[str, Any]:
    """Every argument of `APIRoute(...)`, as FastAPI resolved it for this included route.

    Read from the route context under the argument's own name, so an argument FastAPI adds
    is carried over too; one the context does not hold fails here, at start-up."""
    names = inspect.signature(APIRoute.__init__).parameters.keys() - _NOT_ON_CONTEXT
    return {name: getattr(context, name) for name in sorted(names)}


def _flat_route(context: RouteContext, router_limits: dict[str, Any]) -> PlannedRoute:
    original = context.original_route
    assert isinstance(original, APIRoute)
    assert context.path is not None
    assert context.endpoint is not None
    form_limits = {**router_limits, **(original.form_limits or {})}
    return PlannedRoute(
        context.path,
        context.endpoint,
        form_limits=form_limits or None,  # type: ignore[arg-type]
        **route_arguments(context),
    )
