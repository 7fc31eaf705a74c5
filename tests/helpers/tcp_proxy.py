"""A loopback TCP proxy the test controls: forward, sever connections silently, or blackhole.

`sever_silently()` models a middlebox or failover that drops connections without telling the
client: the client's socket stays open until it next writes, then gets a reset. `blackhole()`
is a firewall that starts dropping packets: new connections are accepted and never answered,
and nothing flows on open ones in either direction until `restore()`, when what was held
arrives (TCP would retransmit it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Coroutine
from types import TracebackType
from typing import Any


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._severed: set[asyncio.StreamWriter] = set()
        self.blackholed = False  # set through blackhole() and restore()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
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
        for client, upstream in self._pairs:
            client.close()
            upstream.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def sever_silently(self) -> None:
        """Close every upstream side; each client side is reset when it next sends anything."""
        for client, upstream in self._pairs:
            upstream.close()
            self._severed.add(client)
        self._pairs.clear()

    def blackhole(self) -> None:
        self.blackholed = True
        self._flowing.clear()

    def restore(self) -> None:
        self.blackholed = False
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blackholed:
            await self._hold_silently(reader, writer)
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._pairs.append((writer, up_writer))
        self._spawn(self._pump(reader, up_writer, client_side=writer))
        self._spawn(self._pump(up_reader, writer, client_side=None))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        client_side: asyncio.StreamWriter | None,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if client_side is not None and client_side in self._severed:
                    _reset(client_side)
                    return
                if sink.is_closing():
                    return
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        # One side ended: end the other, as a transparent proxy would.
        sink.close()

    async def _hold_silently(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                pass
        writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN, as a peer that lost the connection state does."""
    sock: socket.socket | None = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
