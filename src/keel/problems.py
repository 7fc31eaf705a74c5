"""RFC 9457 problem documents (`application/problem+json`): how every error response is built.

Framework-level, so both the FastAPI exception handlers (`keel.api.problems`) and the pure ASGI
layers that answer before any route runs (the body limit's 413, the error layer's 500, the rate
limiter's 429) render errors the same way without the middleware depending on `keel.api`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response

from keel.errors import AppError, PayloadTooLarge

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details."""  # the description of every error response in OpenAPI

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/not-found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "Item not found.",
                    "instance": "/api/v1/items/0b9e2a52-5f1e-4bb4-9a47-7c1f3f0d2c11",
                    "request_id": "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99",
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None


def problem_response(
    request: Request,
    status: int,
    title: str,
    *,
    type_: str = "about:blank",
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.url.path
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    if extensions:
        body.update(extensions)
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_CONTENT_TYPE,
    )


def render_app_error(request: Request, error: AppError) -> Response:
    return problem_response(
        request,
        error.status,
        error.title,
        type_=error.type,
        detail=error.detail,
        headers=error.headers,
        extensions=error.extensions,
    )


def unhandled_error_response(request: Request) -> Response:
    """The generic 500: nothing about the failure leaves the process (the log has it)."""
    return problem_response(
        request,
        500,
        "Internal Server Error",
        type_="/problems/internal-error",
        detail="An unexpected error occurred.",
    )


def payload_too_large_response(request: Request, limit: int) -> Response:
    """413 from the body-limit middleware; it closes the connection (the body stays unread)."""
    error = PayloadTooLarge(f"The request body is larger than {limit} bytes.", max_bytes=limit)
    error.headers["Connection"] = "close"
    return render_app_error(request, error)
