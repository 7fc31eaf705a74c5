"""Who may open a stream: the checks of the handshake, as an ordinary FastAPI dependency.

The handshake of `GET /api/v1/events` (SSE or WebSocket) is served like any request, through
the whole middleware stack: request id, access log, metrics, rate limiter, body limit, security
headers (keel.realtime.gateway). This dependency decides, and the gateway opens the stream
only on a 200:

- a browser's `Origin` must be in CORS_ORIGINS (or be the API's own origin): 403;
- the caller is the user of a single-use `?ticket=` or of an `Authorization` bearer token: 401.
  A WebSocket may send neither and authenticate in its first message instead;
- `Last-Event-ID` (or `?last_event_id=`) is a whole number: 400;
- this process and this user have room for another stream: 503 / 429 with Retry-After.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from keel.auth.schemes import BEARER
from keel.auth.service import authenticate
from keel.errors import (
    BadRequest,
    DependencyUnavailable,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from keel.realtime import repository as repo
from keel.realtime import tickets
from keel.realtime.hub import EventHub, Refused
from keel.resources import Resources

# Where the gateway leaves the `Admission` for the dependency to fill in (the scope is shared).
ADMISSION = "keel.realtime.admission"
INVALID_TICKET = "The ticket is invalid, expired or already used."
MAX_EVENT_ID = 2**63 - 1


@dataclass(slots=True)
class Admission:
    websocket: bool
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    last_event_id: int | None = None


def parse_event_id(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_EVENT_ID:
        raise BadRequest("Last-Event-ID must be an event id this stream sent (a whole number).")
    return int(raw)


def check_origin(request: Request, allowed: list[str]) -> None:
    """Browsers send `Origin`: a page of another site opens no stream (WebSockets are not
    bound by CORS), unless CORS_ORIGINS lets that site call the API."""
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser, or a same-origin GET
    if "*" in allowed or origin in allowed:
        return
    if urlsplit(origin).netloc == request.headers.get("host"):
        return  # the API's own origin
    raise Forbidden("This origin may not open event streams (CORS_ORIGINS).")


def hub_of(request: Request) -> EventHub:
    hub: EventHub = request.state.events
    return hub


async def admit_stream(request: Request) -> Admission:
    admission: Admission | None = request.scope.get(ADMISSION)
    if admission is None:  # only the gateway's handshakes are admitted
        raise NotFound()
    resources: Resources = request.state.resources
    check_origin(request, resources.settings.cors_origins)
    admission.last_event_id = parse_event_id(
        request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    )
    await _authenticate(request, resources, admission)
    admit_owner(hub_of(request), admission.user_id)
    return admission


async def _authenticate(request: Request, resources: Resources, admission: Admission) -> None:
    ticket = request.query_params.get("ticket")
    if ticket is not None:
        admission.user_id, admission.session_id = await redeem_ticket(resources, ticket)
        return
    token = BEARER.token(request.scope["headers"])
    if token is None and admission.websocket:
        return  # the first message carries it (keel.realtime.gateway)
    user = await authenticate(resources.db, resources.sessions, resources.settings, token)
    admission.user_id, admission.session_id = user.user_id, user.session_id


async def redeem_ticket(resources: Resources, ticket: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The (user id, session id) of a valid ticket of a still valid session: 401 otherwise."""
    holder = await tickets.redeem(resources.redis, resources.settings, ticket)
    if holder is None or not await repo.valid_sessions(resources.db, [holder[1]]):
        raise Unauthorized(INVALID_TICKET)
    return holder


def admit_owner(hub: EventHub, user_id: uuid.UUID | None) -> None:
    """Room for another stream in this process, and for this user's when known."""
    try:
        hub.admit(None if user_id is None else str(user_id))
    except Refused as refusal:
        hub.metrics.refusal(refusal.reason)
        if refusal.status == 429:
            raise TooManyRequests(5, refusal.detail) from None
        raise DependencyUnavailable("events", refusal.detail) from None
