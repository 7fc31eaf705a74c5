"""Routers included as one flat route table of `PlannedRoute`s.

`include_flat(app, router, prefix=...)` is `app.include_router(router, prefix=...)` with the
same arguments and the same result for every route (FastAPI itself merges prefixes, tags,
router-level dependencies, responses, callbacks, response classes and body limits), after which
each of the router's routes is registered on the app directly. FastAPI 0.165 keeps an included
router nested and matches it again at request time, a second pass over its routes for every
request that reaches them; flat routes are matched in one scan (measured).

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
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Path
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute, APIRouter, RouteContext, iter_route_contexts
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keel.kit.dependency_plan import DependencyPlan, compile_plan
from keel.kit.requests import parsing_json_with_orjson

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

# A slug: lowercase words of letters and digits joined by single hyphens (`how-to-train-2`).
SLUG_PATTERN = r"[a-z0-9]+(?:-[a-z0-9]+)*"


class SlugConvertor(Convertor[str]):
    """`{slug:slug}` in a path: only a slug routes there (anything else finds no route, 404)."""

    regex = SLUG_PATTERN

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("slug", SlugConvertor())
# The endpoint's parameter: `slug: Slug` (OpenAPI then documents the pattern too).
Slug = Annotated[str, Path(pattern=f"^{SLUG_PATTERN}$", max_length=200)]

# APIRoute's arguments that a route context does not hold under the same name.
_NOT_ON_CONTEXT = frozenset({"self", "path", "endpoint", "form_limits"})


class PlannedRoute(APIRoute):
    """An `APIRoute` whose dependencies are solved by a compiled plan when possible."""

    plan: DependencyPlan | None = None  # None: FastAPI's own solver serves this route

    def get_route_handler(self) -> Handler:
        fastapi_handler = super().get_route_handler()
        if self.body_field is not None:  # the routes FastAPI reads a JSON body for
            fastapi_handler = parsing_json_with_orjson(fastapi_handler)
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


def shadow_literal_paths(routes: Sequence[BaseRoute]) -> None:
    """Make routing independent of route order: a path with parameters never matches the path
    of a literal sibling route (`/things/{slug:slug}` never takes `/things/feed`).

    Starlette tries routes in order and takes the first whose path *and* method match, so
    whatever the order, `DELETE /things/feed` would reach the slug route (slug "feed") when
    only `/things/{slug}` has a DELETE, and a 405's `Allow` would name the slug route's methods.
    Here each parameter route's `path_regex` refuses its literal siblings' paths, once, at
    start-up (`keel.main.create_app`, after every router is included): routing, the 405 `Allow`
    header (keel.api.problems), the body limit and the rate limiter all match with it, and a
    route no literal path can reach (`/items/{item_id:uuid}`) keeps its regex unchanged."""
    plain = [route for route in routes if isinstance(route, Route)]
    literals = {route.path for route in plain if not route.param_convertors}
    for route in plain:
        if not route.param_convertors:
            continue
        captured = sorted(path for path in literals if route.path_regex.match(path))
        if captured:
            route.path_regex = _refusing(route.path_regex, captured)


def _refusing(regex: re.Pattern[str], paths: list[str]) -> re.Pattern[str]:
    """`regex` (Starlette's `^...$`) that no longer matches any of `paths` exactly."""
    assert regex.pattern.startswith("^")
    refused = "|".join(re.escape(path) for path in paths)
    return re.compile(f"^(?!(?:{refused})$){regex.pattern[1:]}")
