"""Every error becomes an RFC 9457 `application/problem+json` response; no traceback leaves.

The exception handlers FastAPI calls; the documents themselves are built by `keel.problems`,
which the middleware uses too.
"""

from __future__ import annotations

import itertools

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from keel.db.database import UNAVAILABLE_ERRORS
from keel.errors import AppError, Conflict, DependencyUnavailable
from keel.kit.schemas import MAX_ERRORS
from keel.problems import problem_response, render_app_error, unhandled_error_response

log = structlog.get_logger(__name__)


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return render_app_error(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    # The first MAX_ERRORS, and how many there were: the answer's size is bounded whatever
    # the body held (InputModel bounds the validation work the same way).
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in itertools.islice(found, MAX_ERRORS)
    ]
    extensions = {"errors": errors, "error_count": len(found)}
    malformed = any(error["type"] == "json_invalid" for error in errors)
    if malformed:
        return problem_response(
            request,
            400,
            "Bad Request",
            type_="/problems/malformed-body",
            detail="The request body is not valid JSON.",
            extensions=extensions,
        )
    return problem_response(
        request,
        422,
        "Unprocessable Content",
        type_="/problems/validation-error",
        detail="The request does not match the schema.",
        extensions=extensions,
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return problem_response(
        request, exc.status_code, _reason(exc.status_code), detail=detail, headers=headers
    )


def _allowed_methods(request: Request) -> str:
    """Every method of every route on this path (RFC 9110 15.5.6). Starlette names only the
    first route it tried, and FastAPI has one route per method (found by schemathesis)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _integrity_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, asyncpg.IntegrityConstraintViolationError)
    return render_app_error(request, Conflict("The request conflicts with existing data."))


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable", error=repr(exc))
    return render_app_error(request, DependencyUnavailable("database"))


async def _redis_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable", error=repr(exc))
    return render_app_error(request, DependencyUnavailable("redis"))


async def _unhandled(request: Request, exc: Exception) -> Response:
    # Last resort: keel.middleware.errors handles unhandled errors for the app. This one only
    # sees an exception raised by a middleware itself (Starlette's ServerErrorMiddleware).
    log.error("unhandled exception outside the app", exc_info=exc)
    return unhandled_error_response(request)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(asyncpg.IntegrityConstraintViolationError, _integrity_error)
    for error_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_type, _database_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)
    app.add_exception_handler(Exception, _unhandled)
