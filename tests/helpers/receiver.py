"""A real HTTP receiver on 127.0.0.1 whose answers the test scripts (h11, one asyncio server).

`script` is consumed one answer per request (then `default`); a path in `routes` always gets
its own answer (several endpoints on one receiver); `down()` makes it accept each
connection and reset it at once (the peer sees a dropped connection; `connections` still counts
it, so a test can assert that nothing even connected).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

import h11


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    # Seconds to hold the request before answering (a slow receiver).
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


class Receiver:
    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        self.script: deque[Reply] = deque(replies)
        self.default = default or Reply()
        self.routes: dict[str, Reply] = {}
        self.requests: list[Received] = []
        self.connections = 0
        self.is_down = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def down(self) -> None:
        self.is_down = True

    def up(self) -> None:
        self.is_down = False

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_for_requests(self, count: int, within: float) -> list[Received]:
        """Until `count` requests arrived (TimeoutError naming what did arrive otherwise)."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.requests)} of {count} requests within {within}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.2)):
                    await self._changed.wait()
        return self.requests

    # feature: webhooks
    def unique_ids(self) -> set[str]:
        return {request.headers["webhook-id"] for request in self.requests}

    # end feature: webhooks

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            if self.is_down:
                _reset(writer)
                return
            await self._serve(reader, writer)
        except (ConnectionError, OSError, h11.RemoteProtocolError):
            pass
        except asyncio.CancelledError:
            pass  # our own shutdown (__aexit__): end quietly, the server is closing
        finally:
            self._handlers.discard(task)
            writer.close()
            self._changed.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        while True:
            request: h11.Request | None = None
            body = b""
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    connection.receive_data(data)
                    if not data and request is None:
                        return
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert request is not None
            self.requests.append(
                Received(
                    path=request.target.decode(),
                    headers={k.decode().lower(): v.decode() for k, v in request.headers},
                    body=body,
                )
            )
            self._changed.set()
            path = request.target.decode()
            reply = self.routes.get(path) or (
                self.script.popleft() if self.script else self.default
            )
            if reply.delay:
                await asyncio.sleep(reply.delay)
            headers = [("content-length", str(len(reply.body))), *reply.headers]
            writer.write(connection.send(h11.Response(status_code=reply.status, headers=headers)))
            writer.write(connection.send(h11.Data(data=reply.body)))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            connection.start_next_cycle()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock: socket.socket | None = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
