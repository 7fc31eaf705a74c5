"""Request ID: accept a safe incoming `X-Request-ID` or make one; echo it on every response.

Applied by `keel.middleware.edge.EdgeMiddleware`, the outermost of Keel's layers, so every
response below it (413, 404, 500, CORS preflight) carries the id. The edge layer finds the
incoming header in the one scan of the request headers it makes (`HEADER`), and for the
duration of the request the id is in `scope["state"]["request_id"]` (read by the problem
documents and the access log) and in `keel.observability.context.request_id_var` (every log
line, through the logging processor `add_request_context`; outbound httpx calls; enqueued jobs).
`bind` sets both, `release` resets the variable and clears the user id `bind_user_id` may have
set. With tracing on the id is also set on the server span.
"""

from __future__ import annotations

from contextvars import Token

from opentelemetry import trace
from starlette.types import Scope

from keel.observability.context import accept_request_id, request_id_var, user_id_var

HEADER = b"x-request-id"

__all__ = ["HEADER", "accept_request_id", "bind", "release"]

_set_request_id = request_id_var.set
_reset_request_id = request_id_var.reset


def bind(scope: Scope, request_id: str, *, tracing: bool) -> Token[str | None]:
    """Make the id visible to everything that runs for this request; `release` undoes it."""
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    state["request_id"] = request_id
    if tracing:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("request_id", request_id)
    return _set_request_id(request_id)


def release(scope: Scope, token: Token[str | None]) -> None:
    _reset_request_id(token)
    if "user_id" in scope["state"]:  # set by keel.observability.context.bind_user_id
        user_id_var.set(None)
