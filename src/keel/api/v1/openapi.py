"""OpenAPI `responses` for problem+json errors: every status an operation returns is documented."""

from __future__ import annotations

from typing import Any

from keel.api.surface import error_responses
from keel.problems import PROBLEM_FORMAT


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these statuses (503 is always included: every route has a DB)."""
    return error_responses(PROBLEM_FORMAT, *statuses)


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
