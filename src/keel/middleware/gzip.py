"""GZip above a size threshold, and next to no cost for clients that do not accept it.

A request whose Accept-Encoding does not name gzip passes through with its own `send`; only
one that does gets its response sent through the compressing `send`. It compresses as
Starlette's `GZipMiddleware` does, with the same rules:

* a response that already has a Content-Encoding, a 206, or an excluded media type (already
  compressed formats, event streams) passes untouched;
* a single body below `minimum_size` passes untouched (no Vary either: nothing was negotiated);
* otherwise the body is gzipped, `Content-Encoding: gzip` set, `Content-Length` corrected (or
  dropped when streaming or when trailers follow), `Vary: Accept-Encoding` added; streamed
  bodies are flushed chunk by chunk; chunks of `THREAD_MINIMUM_SIZE` and more are compressed
  on a thread so the loop is not blocked;
* one rule more than Starlette's: an empty body (304, 204, HEAD) always passes untouched,
  whatever `minimum_size`.

It is Keel's own because Starlette's builds a responder object per request that normalizes its
list of excluded media types again and wraps the headers twice, for every gzip-accepting
request (httpx, browsers and most HTTP clients send Accept-Encoding: gzip) even when the body is
far too small to compress (measured). Here the common case, one
small JSON body, is one length check.
"""

from __future__ import annotations

import asyncio
import zlib
from concurrent.futures import ThreadPoolExecutor

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Starlette's defaults: media types that are compressed already, or must not be buffered.
EXCLUDED_MEDIA_TYPES = frozenset(
    {
        "application/grpc",
        "application/pdf",  # compressed inside already
        "application/gzip",
        "application/x-gzip",
        "application/zip",
        "audio/*",
        "font/woff",
        "font/woff2",
        "image/avif",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "text/event-stream",
        "video/*",
    }
)
THREAD_MINIMUM_SIZE = 128 * 1024
# Large chunks are compressed on threads of their own, not on the loop's default executor:
# without uvloop that one also resolves host names (getaddrinfo) for new database and Redis
# connections, and a burst of large responses must not delay them. zlib releases the GIL.
_COMPRESSION_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keel-gzip")


class GZipMiddleware:
    def __init__(self, app: ASGIApp, *, minimum_size: int, compresslevel: int) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    if b"gzip" in value:
                        send = _GZipSend(send, self.minimum_size, self.compresslevel).send
                    break
        await self.app(scope, receive, send)


def _excluded(media_type: bytes) -> bool:
    text = media_type.decode("latin-1").partition(";")[0].strip().lower()
    if text in EXCLUDED_MEDIA_TYPES or text.partition("/")[0] + "/*" in EXCLUDED_MEDIA_TYPES:
        return True
    return text.startswith("application/grpc+")


def _passes_untouched(start: Message) -> bool:
    if start["status"] == 206:
        return True
    for name, value in start.get("headers", ()):
        if name == b"content-encoding" or (name == b"content-type" and _excluded(value)):
            return True
    return False


def _compressed_start(start: Message, body_length: int | None) -> Message:
    """The start message for a gzipped body: encoding, length (None: unknown), Vary."""
    headers: list[tuple[bytes, bytes]] = []
    vary_at = None
    for name, value in start.get("headers", ()):
        if name == b"content-length":
            continue
        if name == b"vary":
            vary_at = len(headers)
        headers.append((name, value))
    if vary_at is None:
        headers.append((b"vary", b"Accept-Encoding"))
    else:
        name, value = headers[vary_at]
        if b"accept-encoding" not in value.lower():
            headers[vary_at] = (name, value + b", Accept-Encoding")
    headers.append((b"content-encoding", b"gzip"))
    if body_length is not None:
        headers.append((b"content-length", b"%d" % body_length))
    return {**start, "headers": headers}


class _GZipSend:
    """One response's `send`: holds the start message until the first body decides."""

    __slots__ = ("_compresslevel", "_compressor", "_held", "_minimum_size", "_passthrough", "_send")

    def __init__(self, send: Send, minimum_size: int, compresslevel: int) -> None:
        self._send = send
        self._minimum_size = minimum_size
        self._compresslevel = compresslevel
        self._held: Message | None = None
        self._passthrough = False
        self._compressor: zlib._Compress | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self._passthrough:
            await self._send(message)
        elif kind == "http.response.start":
            if _passes_untouched(message):
                self._passthrough = True
                await self._send(message)
            else:
                self._held = message
        elif kind == "http.response.body" and self._held is not None:
            await self._first_body(self._held, message)
        elif kind == "http.response.body" and self._compressor is not None:
            more_body = message.get("more_body", False)
            data = await _compress(self._compressor, message.get("body", b""), more_body)
            await self._send({**message, "body": data})
        elif kind == "http.response.pathsend" and self._held is not None:
            await self._unchanged(self._held, message)  # a file the server sends: as it is
        else:  # early hints, trailers
            await self._send(message)

    async def _first_body(self, start: Message, message: Message) -> None:
        self._held = None
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if not more_body and (not body or len(body) < self._minimum_size):
            # The common case, one small body; and an empty one (304, 204, HEAD) even with
            # GZIP_MINIMUM_SIZE=0: gzip would turn "no body" into 20 bytes.
            await self._unchanged(start, message)
            return
        self._compressor = zlib.compressobj(self._compresslevel, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        data = await _compress(self._compressor, body, more_body)
        length = None if more_body or start.get("trailers", False) else len(data)
        await self._send(_compressed_start(start, length))
        await self._send({**message, "body": data})

    async def _unchanged(self, start: Message, message: Message) -> None:
        self._held = None
        self._passthrough = True
        await self._send(start)
        await self._send(message)


async def _compress(compressor: zlib._Compress, body: bytes, more_body: bool) -> bytes:
    if len(body) >= THREAD_MINIMUM_SIZE:  # ~ms of CPU: off the loop
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            _COMPRESSION_THREADS, _compress_chunk, compressor, body, more_body
        )
    return _compress_chunk(compressor, body, more_body)


def _compress_chunk(compressor: zlib._Compress, body: bytes, more_body: bool) -> bytes:
    flush_mode = zlib.Z_SYNC_FLUSH if more_body else zlib.Z_FINISH
    return compressor.compress(body) + compressor.flush(flush_mode)
