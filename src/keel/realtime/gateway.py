"""The events stream at the edge: the outermost ASGI layer, for `GET /api/v1/events` only.

The handshake (SSE or WebSocket) is served as an ordinary GET through the whole app, so every
middleware and the rate limiter apply to it and `keel.realtime.admission` decides. A refusal
is passed to the client as it was made (a problem response; a WebSocket gets it as the
handshake's HTTP response). Once admitted, the stream itself is written here, below no other
middleware: a message to 5,000 clients must not pay the per-message work of every layer.

Every other request passes through untouched (one path comparison).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.auth.service import authenticate
from keel.errors import AppError, DependencyUnavailable, TooManyRequests, Unauthorized
from keel.realtime import frames
from keel.realtime import repository as repo
from keel.realtime.admission import (
    ADMISSION,
    Admission,
    admit_owner,
    parse_event_id,
    redeem_ticket,
)
from keel.realtime.hub import EventHub, Refused
from keel.realtime.streams import Stream, Transport
from keel.resources import Resources

log = structlog.get_logger("keel.events")

EVENTS_PATH = "/api/v1/events"
REPLAY_PAGE = 500
FIRST_MESSAGE = 'authenticate in the first message: {"token": "<access token>"}'
# Response headers of the handshake that do not describe a stream.
_NOT_FOR_STREAMS = {b"content-type", b"content-length", b"cache-control", b"etag"}
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # proxies must pass each event on at once
]


@dataclass(slots=True)
class Handshake:
    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)

    async def capture(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


class Refusal(Exception):
    """A stream ended before it began (WebSocket authentication in the first message)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class EventsGateway:
    def __init__(self, app: ASGIApp, path: str = EVENTS_PATH) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        admission = Admission(websocket=websocket)
        handshake, request_scope = await self._handshake(scope, receive, admission)
        if handshake.status != 200:
            await _refuse(scope, send, handshake)
            return
        session = _Session(request_scope, admission, send, handshake.headers)
        # Held for the stream's whole life otherwise: every idle stream would keep them.
        del handshake, request_scope
        if websocket:
            await session.serve_websocket(receive)
        else:
            await session.serve_sse(receive)

    async def _handshake(
        self, scope: Scope, receive: Receive, admission: Admission
    ) -> tuple[Handshake, Scope]:
        """Run the app on the handshake as a plain GET; what it answered."""
        request_scope = {**scope, "type": "http", "method": "GET", ADMISSION: admission}
        if scope["type"] == "websocket":
            request_scope["scheme"] = "https" if scope.get("scheme") == "wss" else "http"
            request_scope.setdefault("http_version", "1.1")
            receive = _no_body
        handshake = Handshake()
        await self.app(request_scope, receive, handshake.capture)
        return handshake, request_scope


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _refuse(scope: Scope, send: Send, handshake: Handshake) -> None:
    start = {"status": handshake.status, "headers": handshake.headers}
    body = bytes(handshake.body)
    if scope["type"] == "http":
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", **start})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # a server without the denial-response extension: close before accepting
        await send({"type": "websocket.close", "code": 1008})


class _Session:
    """One admitted stream, from its first frame to its last log line."""

    def __init__(
        self,
        scope: Scope,
        admission: Admission,
        send: Send,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        state = scope["state"]
        self.hub: EventHub = state["events"]
        self.resources: Resources = state["resources"]
        self.request_id: str | None = state.get("request_id")
        self.admission = admission
        self.send = send
        # What the handshake's middleware added (request id, rate limits, security headers).
        self.headers = [h for h in headers if h[0] not in _NOT_FOR_STREAMS]
        self.started = time.monotonic()

    async def serve_sse(self, receive: Receive) -> None:
        headers, self.headers = self.headers + SSE_HEADERS, []
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        stream = self._open(Transport.SSE)
        await self._run(stream, receive, disconnect="http.disconnect")

    async def serve_websocket(self, receive: Receive) -> None:
        self.headers = []  # an accepted WebSocket answers with its request id only
        if (await receive())["type"] != "websocket.connect":
            return  # the client left during the handshake
        await self.send({"type": "websocket.accept", "headers": self._echo_headers()})
        try:
            if self.admission.user_id is None:
                await self._first_message(receive)
            stream = self._open(Transport.WEBSOCKET)
        except Refusal as refusal:
            await self.send(
                {"type": "websocket.close", "code": refusal.code, "reason": refusal.reason}
            )
            return
        await self._run(stream, receive, disconnect="websocket.disconnect")

    def _echo_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-request-id", self.request_id.encode())] if self.request_id else []

    def _open(self, transport: Transport) -> Stream:
        admission = self.admission
        assert admission.user_id is not None
        assert admission.session_id is not None
        try:
            return self.hub.open(
                str(admission.user_id), admission.session_id, transport, self.send, after=0
            )
        except Refused as refused:
            self.hub.metrics.refusal(refused.reason)
            raise Refusal(1013, refused.detail) from None

    async def _first_message(self, receive: Receive) -> None:
        """A WebSocket that sent no credential in the handshake: `{"token": ...}` or
        `{"ticket": ...}`, optionally with `"last_event_id"`, within the auth timeout."""
        settings = self.resources.settings
        try:
            async with asyncio.timeout(settings.realtime_auth_timeout_seconds):
                message = await receive()
        except TimeoutError:
            raise Refusal(1008, FIRST_MESSAGE) from None
        if message["type"] != "websocket.receive":
            raise Refusal(1000, "client left")
        fields = _json_object(message.get("text") or message.get("bytes") or b"")
        try:
            if "last_event_id" in fields:  # else the handshake's `?last_event_id=`, if any
                self.admission.last_event_id = parse_event_id(_text(fields["last_event_id"]))
            await self._authenticate(fields)
            admit_owner(self.hub, self.admission.user_id)
        except (DependencyUnavailable, TooManyRequests) as error:  # try again later
            raise Refusal(1013, _reason(error)) from None
        except AppError as error:
            raise Refusal(1008, _reason(error)) from None

    async def _authenticate(self, fields: dict[str, Any]) -> None:
        resources = self.resources
        ticket, token = _text(fields.get("ticket")), _text(fields.get("token"))
        if ticket:
            user_id, session_id = await redeem_ticket(resources, ticket)
        elif token:
            user = await authenticate(resources.db, resources.sessions, resources.settings, token)
            user_id, session_id = user.user_id, user.session_id
        else:
            raise Unauthorized(FIRST_MESSAGE)
        self.admission.user_id, self.admission.session_id = user_id, session_id

    async def _run(self, stream: Stream, receive: Receive, disconnect: str) -> None:
        log.info("events stream opened", **self._fields(stream))
        try:
            await self._replay(stream)
            while (await receive())["type"] != disconnect:
                pass  # a client's messages after the first carry nothing
        except asyncio.CancelledError:
            if stream.closing is None:
                raise  # the server is stopping
            await self._abort(stream)  # dropped by the hub: end the connection now
        except OSError:
            pass  # the client left during the replay
        finally:
            self.hub.close(stream)
            closing = stream.closing
            log.info(
                "events stream closed",
                **self._fields(stream),
                code=closing.code if closing else 1000,
                sent=stream.sent,
                seconds=round(time.monotonic() - self.started, 3),
            )

    async def _abort(self, stream: Stream) -> None:
        """End a stream the hub dropped. Its last message waits for the client to read; one
        that reads nothing for a heartbeat interval is cut off (uvicorn closes the connection)."""
        closing = stream.closing
        if closing is None:
            return
        last: Message = (
            {"type": "websocket.close", "code": closing.code, "reason": closing.reason}
            if stream.transport is Transport.WEBSOCKET
            else {"type": "http.response.body", "body": b"", "more_body": False}
        )
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self.resources.settings.realtime_heartbeat_seconds):
                await self.send(last)

    def _fields(self, stream: Stream) -> dict[str, Any]:
        return {
            "transport": stream.transport.value,
            "user_id": stream.owner,
            "request_id": self.request_id,
        }

    async def _replay(self, stream: Stream) -> None:
        """Send what the client missed since its last event id (or the gap signal), then
        `stream.ready`, then the events that arrived meanwhile."""
        owner = uuid.UUID(stream.owner)
        db = self.resources.db
        window = await repo.owner_window(db, owner)
        after = self.admission.last_event_id
        entries: list[tuple[int, str]] = []
        if after is None or after > window.latest or _purged_since(window, after):
            if after is not None:
                entries.append((0, frames.control_frame(frames.GAP, last_event_id=str(after))))
            after = window.latest
        else:
            while True:
                page = await repo.owner_events_after(db, owner, after, REPLAY_PAGE)
                entries.extend((event.sequence, frames.event_frame(event)) for event in page)
                if page:
                    after = page[-1].sequence
                if len(page) < REPLAY_PAGE:
                    break
        entries.append(
            (0, frames.control_frame(frames.READY, last_event_id=str(after) if after else None))
        )
        await stream.write_now(entries)
        stream.replayed(after)


def _purged_since(window: repo.Window, after: int) -> bool:
    """Whether events after `after` are gone from the log (older than the retention)."""
    if window.latest <= after:
        return False
    return window.oldest == 0 or window.oldest > after + 1


def _json_object(raw: str | bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refusal(1008, FIRST_MESSAGE) from None
    if not isinstance(value, dict):
        raise Refusal(1008, FIRST_MESSAGE)
    return value


def _reason(error: AppError) -> str:
    # A close reason holds at most 123 bytes.
    return str(error.detail or error.title).encode()[:120].decode(errors="ignore")


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
