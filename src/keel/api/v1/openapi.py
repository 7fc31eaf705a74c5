"""OpenAPI `responses` for problem+json errors: every status an operation returns is documented."""

from __future__ import annotations

from typing import Any

from keel.kit.schemas import MAX_ERRORS
from keel.problems import Problem

_PROBLEM_SCHEMA = Problem.model_json_schema()
_DESCRIPTIONS = {
    400: "Malformed request (invalid JSON body, invalid cursor)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "Authenticated, but not allowed (administrators only)",
    404: "Not found, or not visible to the caller",
    409: "Conflicts with existing data",
    412: "If-Match does not match the current ETag",
    413: "The request body is larger than MAX_BODY_SIZE",
    422: f"Validation failed: `errors` lists the first {MAX_ERRORS}, `error_count` says how many",
    503: "A dependency (PostgreSQL, Redis) is unavailable; retry after Retry-After",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these statuses (503 is always included: every route has a DB)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": _PROBLEM_SCHEMA}},
        }
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        if status == 503:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        responses[status] = entry
    return responses


def links(resource: str, id_field: str, **operations: str) -> dict[str, Any]:
    """A response's OpenAPI `links` from the resource id it carries to the operations on it
    (generated clients and schemathesis' stateful phase follow them: create -> get -> update ->
    delete): `responses={201: links(...)}`. `operations` maps a link name to an operation id;
    the path parameter is `id_field`, filled from the response body's `id`."""
    return {
        "links": {
            name: {
                "operationId": operation_id,
                "parameters": {id_field: "$response.body#/id"},
                "description": f"The {resource} in this response",
            }
            for name, operation_id in operations.items()
        }
    }
