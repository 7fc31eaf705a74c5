"""How every error response is built: RFC 9457 problem documents (`application/problem+json`)
unless the API surface a path belongs to writes its errors in a format of its own.

Framework-level, so both the FastAPI exception handlers (`keel.api.problems`) and the pure ASGI
layers that answer before any route runs (the body limit's 413, the error layer's 500, the rate
limiter's 429, the deadline's 503) render errors the same way without the middleware depending
on `keel.api`. Each error is first an `ErrorDetails`; the `ErrorFormat` of the request's path
(`ErrorFormats`, built once by create_app and kept in `app.state.error_formats`) writes its
body. Only error responses look the format up; a successful request pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
                    "detail": "The account no longer exists.",
                    "instance": "/api/v1/users/me",
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


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """One error, whatever format writes it. `extensions` carries what the error adds
    (`errors` and `error_count` of a validation error, `max_bytes` of a 413 ...)."""

    status: int
    title: str
    type: str = "about:blank"
    detail: str | None = None
    instance: str = ""
    request_id: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ErrorFormat:
    """How an API surface writes its error bodies: `render` returns the JSON body of one error,
    answered as `media_type`; `model` describes it in the OpenAPI document. The status and the
    headers (Retry-After, Allow, WWW-Authenticate ...) are set for every format alike."""

    media_type: str
    render: Callable[[ErrorDetails], Any]
    model: type[BaseModel]


def problem_document(error: ErrorDetails) -> dict[str, Any]:
    body: dict[str, Any] = {"type": error.type, "title": error.title, "status": error.status}
    if error.detail:
        body["detail"] = error.detail
    body["instance"] = error.instance
    if error.request_id:
        body["request_id"] = error.request_id
    body.update(error.extensions)
    return body


PROBLEM_FORMAT = ErrorFormat(PROBLEM_CONTENT_TYPE, problem_document, Problem)


class ErrorFormats:
    """The error format of each API surface's path prefix; problem+json everywhere else."""

    def __init__(self, by_prefix: Mapping[str, ErrorFormat]) -> None:
        # Longest prefix first; problem+json prefixes need no entry (it is the default).
        self._prefixes = tuple(
            (prefix.rstrip("/"), format_)
            for prefix, format_ in sorted(by_prefix.items(), key=lambda item: -len(item[0]))
            if format_ is not PROBLEM_FORMAT
        )

    def for_path(self, path: str) -> ErrorFormat:
        for prefix, format_ in self._prefixes:
            if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("", "/"):
                return format_
        return PROBLEM_FORMAT


def _format_of(request: Request) -> ErrorFormat:
    app = request.scope.get("app")  # set by Starlette before any middleware runs
    formats = getattr(getattr(app, "state", None), "error_formats", None)
    if isinstance(formats, ErrorFormats):
        return formats.for_path(request.scope["path"])
    return PROBLEM_FORMAT


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
    """The error response, in the format of the request path's API surface."""
    error = ErrorDetails(
        status,
        title,
        type_,
        detail,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        extensions=extensions or {},
    )
    format_ = _format_of(request)
    return Response(
        orjson.dumps(format_.render(error)),
        status_code=status,
        headers=dict(headers or {}),
        media_type=format_.media_type,
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
