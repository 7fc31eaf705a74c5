"""What goes over the wire: the JSON frame of each event and control message, its SSE form,
and the message the relay publishes to every process.

Every frame is one JSON object with a `type`. An event's `id` is the owner's sequence number
(what a client resumes from); control messages have types under `stream.` (docs/realtime.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from keel.realtime.repository import LoggedEvent

READY = "stream.ready"
GAP = "stream.gap"
CLOSING = "stream.closing"
CLOSED = "stream.closed"

SSE_HEARTBEAT = b": heartbeat\n\n"


def event_frame(event: LoggedEvent) -> str:
    return orjson.dumps(
        {
            "id": str(event.sequence),
            "type": event.type,
            "data": event.data,
            "occurred_at": event.occurred_at.isoformat(),
        }
    ).decode()


def control_frame(kind: str, **fields: Any) -> str:
    return orjson.dumps({"type": kind, **fields}).decode()


def sse_event(sequence: int, frame: str) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (sequence, frame.encode())


def sse_control(frame: str, retry_ms: int | None = None) -> bytes:
    # `retry:` sets how long an EventSource waits before it reconnects.
    retry = b"retry: %d\n" % retry_ms if retry_ms is not None else b""
    return b"%sdata: %s\n\n" % (retry, frame.encode())


@dataclass(frozen=True, slots=True)
class Published:
    """An event as every process receives it: routed and ordered without parsing its frame."""

    position: int
    owner: str
    sequence: int
    occurred_at: float  # epoch seconds: the fan-out lag metric
    frame: str


def published_message(event: LoggedEvent) -> str:
    occurred = event.occurred_at.timestamp()
    return f"{event.position} {event.owner_id} {event.sequence} {occurred!r} {event_frame(event)}"


def parse_published(raw: bytes | str) -> Published:
    text = raw.decode() if isinstance(raw, bytes) else raw
    position, owner, sequence, occurred, frame = text.split(" ", 4)
    return Published(int(position), owner, int(sequence), float(occurred), frame)


def from_log(event: LoggedEvent) -> Published:
    return Published(
        event.position,
        str(event.owner_id),
        event.sequence,
        event.occurred_at.timestamp(),
        event_frame(event),
    )
