"""An API surface: a prefix, the auth scheme its callers use and the format of its errors.

`/api/v1` is one (`keel.api.v1.surface`); a second API with another prefix, another token
header (`Authorization: Token <jwt>`, `X-API-Key: <jwt>`) and another error body is another,
added to `keel.api.surfaces.SURFACES`. `install_surfaces` (called once by create_app) includes
each router under its prefix, and from the same list the error format of every path
(`keel.problems.ErrorFormats`: exception handlers and middleware alike) and the token schemes
the rate limiter keys callers on are derived, once, at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from keel.api.deps import TokenAuthentication, is_optional_authentication
from keel.kit.routing import include_flat
from keel.kit.schemas import MAX_ERRORS
from keel.problems import PROBLEM_FORMAT, ErrorFormat, ErrorFormats

ERROR_DESCRIPTIONS = {
    400: "Malformed request (invalid JSON body, invalid cursor)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "Authenticated, but not allowed (administrators only)",
    404: "Not found, or not visible to the caller",
    405: "The path does not accept this method; Allow lists those it does",
    409: "Conflicts with existing data",
    412: "If-Match does not match the current ETag",
    413: "The request body (or the file in it) is larger than this operation accepts",
    415: "The content is not of a type this operation accepts",
    416: "The Range asked for lies outside the file; Content-Range gives its size",
    422: f"Validation failed: `errors` lists the first {MAX_ERRORS}, `error_count` says how many",
    429: "Too many attempts; retry after Retry-After",
    500: "An unexpected error; nothing about it is disclosed",
    503: "A dependency (PostgreSQL, Redis) is unavailable; retry after Retry-After",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    416: {"Content-Range": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "integer"}}},
    503: {"Retry-After": {"schema": {"type": "integer"}}},
}


@dataclass(frozen=True)
class ApiSurface:
    """`router`'s routes served under `prefix`, authenticated by `auth` (its `required` and
    `optional` dependencies), every error on `prefix` written in `errors`."""

    prefix: str
    router: APIRouter
    auth: TokenAuthentication
    errors: ErrorFormat = PROBLEM_FORMAT

    def responses(self, *statuses: int) -> dict[int | str, dict[str, Any]]:
        """`responses=` entries for these statuses in this surface's error format (503 is
        always included: every route has a database)."""
        return error_responses(self.errors, *statuses)


def error_responses(format_: ErrorFormat, *statuses: int) -> dict[int | str, dict[str, Any]]:
    schema = format_.model.model_json_schema()
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        entry: dict[str, Any] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {format_.media_type: {"schema": schema}},
        }
        if status in _HEADERS:
            entry["headers"] = {**_HEADERS[status]}
        responses[status] = entry
    return responses


def install_surfaces(app: FastAPI, surfaces: Sequence[ApiSurface]) -> None:
    """Each surface's routes under its prefix, and the error format of each prefix."""
    prefixes = [surface.prefix for surface in surfaces]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"two API surfaces share a prefix: {prefixes}")
    for surface in surfaces:
        include_flat(app, surface.router, prefix=surface.prefix)
    app.state.error_formats = ErrorFormats({s.prefix: s.errors for s in surfaces})
    _document_optional_authentication(app)


def _document_optional_authentication(app: FastAPI) -> None:
    """An operation whose user is optional lists `{}` (no credential) among its security
    requirements, so clients and schemathesis know anonymous calls are allowed."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for route in app.routes:
            if isinstance(route, APIRoute) and _has_optional_user(route.dependant):
                for method in route.methods or ():
                    path = schema.get("paths", {}).get(route.path_format, {})
                    operation = path.get(method.lower(), {})
                    if operation.get("security") and {} not in operation["security"]:
                        operation["security"] = [{}, *operation["security"]]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _has_optional_user(dependant: Dependant) -> bool:
    return is_optional_authentication(dependant.call) or any(
        _has_optional_user(dependency) for dependency in dependant.dependencies
    )
