"""Request ID: accept a safe incoming `X-Request-ID` or make one; echo it on every response.

The outermost of Keel's concerns (`install_middleware`), so every response below it (413, 404,
500, CORS preflight) carries the id and every log line of the request has it. For the duration
of the request the id is in `scope["state"]["request_id"]` (read by the problem documents and
the access log) and in `keel.observability.context.request_id_var` (every log line, through the
logging processor `add_request_context`, and what hands it on: `keel.observability.context`).
Both are cleared when the request ends, and so is the user id `bind_user_id` may have set.
"""

from __future__ import annotations

from opentelemetry import trace  # feature: tracing
from starlette.types import Scope

from keel.middleware.composed import Concern, ResponseHeaders
from keel.observability.context import accept_request_id, request_id_var, user_id_var

HEADER = b"x-request-id"
# This request's context-variable token and echoed header, kept in its scope.
_BOUND = "keel.request_id"


class RequestId(Concern):
    # feature: tracing
    def __init__(self, *, tracing: bool = False) -> None:
        self.tracing = tracing

    # end feature: tracing
    def on_request(self, scope: Scope) -> None:
        raw: bytes | None = None
        for name, value in scope["headers"]:
            if name == HEADER:
                raw = value
                break
        request_id = accept_request_id(raw)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        # feature: tracing
        # With tracing on the id is also set on the server span.
        if self.tracing:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute("request_id", request_id)
        # end feature: tracing
        scope[_BOUND] = (request_id_var.set(request_id), (HEADER, request_id.encode("latin-1")))

    def on_response_start(self, scope: Scope, status: int, headers: ResponseHeaders) -> None:
        headers.append(scope[_BOUND][1])

    def on_finish(self, scope: Scope, status: int, seconds: float) -> None:
        request_id_var.reset(scope[_BOUND][0])
        if "user_id" in scope["state"]:  # set by keel.observability.context.bind_user_id
            user_id_var.set(None)
