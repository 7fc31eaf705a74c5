"""`/api/v1/events`: the signed-in user's domain events, live, as a WebSocket or as SSE.

`GET /api/v1/events` is the stream (docs/realtime.md: the protocol, resuming, close codes).
Its handshake is an ordinary request through this router; `keel.realtime.gateway` takes the
connection over once the handshake is admitted. It is left out of the OpenAPI document: a
stream that never ends is not an operation a generated client or a contract test can call.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict

from keel.api.deps import AppSettings, CurrentUser, RedisDep
from keel.api.v1.openapi import problems
from keel.realtime import tickets
from keel.realtime.admission import admit_stream

router = APIRouter(prefix="/events", tags=["events"])


class TicketRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"ticket": "kJ3x0v9Q2m8hZ4r1tY6wB5nC7dE0fG2a", "expires_in": 30}]
        }
    )

    ticket: str
    expires_in: int


@router.post(
    "/tickets",
    status_code=201,
    responses=problems(401),
    operation_id="create_event_ticket",
    summary="A single-use ticket to open an event stream",
)
async def create_ticket(user: CurrentUser, redis: RedisDep, settings: AppSettings) -> TicketRead:
    """Open the stream with `GET /api/v1/events?ticket=...` within `expires_in` seconds:
    browsers cannot set an `Authorization` header on a WebSocket or an EventSource."""
    ticket = await tickets.issue(redis, settings, user)
    return TicketRead(ticket=ticket.ticket, expires_in=ticket.expires_in)


@router.get("", include_in_schema=False, dependencies=[Depends(admit_stream)])
async def open_stream() -> Response:
    # Admitted: an empty 200 tells the gateway to open the stream.
    return Response(status_code=200)
