"""Per-request context that outlives the middleware: the request id and the acting user.

The request id lives in one `ContextVar`, `request_id_var`, read by what hands it on (the
outbound httpx hook) and by the logging processor `keel.observability.logging.add_request_context`,
which puts it on every log line written while it is set. The middleware sets it when a request
starts and resets it when the request ends. The acting user is the same: `user_id_var`, set by
`bind_user_id`, cleared by the middleware. (Binding them into structlog's own contextvars per
request cost more than the rest of the request id's work together: measured in docs/edge.md.)
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from clients: at most 128 characters of a conservative alphabet (no spaces, no quotes,
# nothing a log parser or a header splitter would trip on). Anything else is replaced.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# feature: worker
# The jobs a request enqueues carry its id too: `keel.jobs.context`.
# end feature: worker
request_id_var: ContextVar[str | None] = ContextVar("keel_request_id", default=None)
user_id_var: ContextVar[str | None] = ContextVar("keel_user_id", default=None)


def new_request_id() -> str:
    """32 random hex characters (~0.4 us; uuid4().hex costs ~3x more)."""
    return os.urandom(16).hex()


def accept_request_id(raw: bytes | None) -> str:
    """The client's id when it is safe to echo and log, otherwise a fresh one."""
    if raw:
        candidate = raw.decode("latin-1")
        if REQUEST_ID_PATTERN.fullmatch(candidate):
            return candidate
    return new_request_id()


def current_request_id() -> str | None:
    return request_id_var.get()


def bind_user_id(request: Any, user_id: object) -> None:
    """Call from the authentication dependency once the user is known.

    The access log reads `request.state.user_id`; `user_id_var` puts `user_id` on every later log
    line of the request (`add_request_context`). The middleware clears it when the request ends.
    """
    text = str(user_id)
    state = request.scope.get("state")
    if state is None:
        state = request.scope["state"] = {}
    state["user_id"] = text  # what `request.state.user_id = text` does, without the wrapper
    user_id_var.set(text)
