"""The route label of a request (metrics, access log): its template, never its raw path."""

from __future__ import annotations

from starlette.types import Scope

from keel.observability.metrics import UNMATCHED_ROUTE


def route_template(scope: Scope) -> str:
    """The matched route's full path template, or one shared label for every unmatched path.

    Read after the inner app ran. FastAPI >= 0.165 no longer copies included routers' routes
    into the app: `scope["route"]` is the route as declared in its APIRouter (`/users/me`), and
    the template with every prefix (`/api/v1/users/me`) is on the effective route context that
    the router leaves in `scope["fastapi"]` (Keel registers its own routes on the app,
    `keel.kit.routing.include_flat`, so theirs carry the full path; this serves routers included
    the ordinary way). There is no public accessor yet; tests/middleware pins this down, so a
    FastAPI change fails a test instead of mislabelling metrics. A raw path is never used: it
    would explode label cardinality.
    """
    fastapi_scope = scope.get("fastapi")
    if fastapi_scope:
        context = fastapi_scope.get("effective_route_context")
        if context is not None:
            template = getattr(context, "path_format", None)
            if isinstance(template, str) and template:
                return template
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE
