"""The gzip layer (keel.middleware.gzip) as a plain ASGI callable."""

from __future__ import annotations

import gzip
import os
import threading
import zlib
from collections.abc import Sequence

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from keel.middleware import gzip as gzip_module
from keel.middleware.gzip import THREAD_MINIMUM_SIZE, GZipMiddleware
from tests.middleware.asgi import call, http_scope, responder

JSON = (b"content-type", b"application/json")


def gzipped(app: ASGIApp, *, minimum_size: int = 100) -> ASGIApp:
    """`app` behind the gzip layer, called for a request that accepts gzip."""
    layer = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=6)

    async def accepting_gzip(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [*scope["headers"], (b"accept-encoding", b"gzip, deflate")]
        await layer({**scope, "headers": headers}, receive, send)

    return accepting_gzip


@pytest.mark.parametrize("accept_encoding", [None, "identity", "br, deflate"])
async def test_a_request_that_does_not_accept_gzip_keeps_its_own_send(
    accept_encoding: str | None,
) -> None:
    seen: list[Send] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(send)

    async def send(message: object) -> None:
        raise AssertionError("not called")

    headers = [("Accept-Encoding", accept_encoding)] if accept_encoding else []
    layer = GZipMiddleware(inner, minimum_size=0, compresslevel=6)
    await layer(http_scope(headers=headers), _receive, send)
    assert seen == [send]


async def _receive() -> dict[str, object]:
    raise AssertionError("not called")


def streaming(chunks: Sequence[bytes], headers: Sequence[tuple[bytes, bytes]] = (JSON,)) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        for index, chunk in enumerate(chunks):
            more = index < len(chunks) - 1
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

    return app


async def test_a_small_body_passes_untouched_without_vary() -> None:
    headers = [JSON, (b"content-length", b"2")]
    reply = await call(gzipped(responder(headers=headers, body=b"{}")), http_scope())
    assert reply.start["headers"] == headers
    assert reply.body == b"{}"


@pytest.mark.parametrize("status", [200, 204, 304])
async def test_an_empty_body_passes_untouched_even_with_no_minimum_size(status: int) -> None:
    headers = [JSON, (b"etag", b'"1"')]
    app = responder(status=status, headers=headers, body=b"")
    reply = await call(gzipped(app, minimum_size=0), http_scope())
    assert reply.start["status"] == status
    assert reply.start["headers"] == headers  # no Content-Encoding, no 20-byte gzip header
    assert reply.body == b""


async def test_a_large_body_is_compressed_with_length_encoding_and_vary() -> None:
    body = b'{"x": "' + b"a" * 1000 + b'"}'
    headers = [JSON, (b"content-length", b"%d" % len(body))]
    reply = await call(gzipped(responder(headers=headers, body=body)), http_scope())
    assert gzip.decompress(reply.body) == body
    assert reply.header("content-encoding") == "gzip"
    assert reply.headers("content-length") == [str(len(reply.body))]
    assert reply.headers("vary") == ["Accept-Encoding"]
    assert len(reply.body) < len(body) / 10


async def test_an_existing_vary_is_merged_not_duplicated() -> None:
    body = b"a" * 500
    for vary, expected in ((b"Origin", "Origin, Accept-Encoding"), (b"accept-encoding", None)):
        app = responder(headers=[JSON, (b"vary", vary)], body=body)
        reply = await call(gzipped(app), http_scope())
        assert reply.headers("vary") == [expected or vary.decode()]


@pytest.mark.parametrize(
    "headers",
    [
        [JSON, (b"content-encoding", b"br")],  # encoded already
        [(b"content-type", b"image/png")],
        [(b"content-type", b"text/event-stream; charset=utf-8")],
        [(b"content-type", b"video/mp4")],  # a wildcard entry
        [(b"content-type", b"application/grpc+proto")],
    ],
)
async def test_encoded_and_excluded_responses_pass_untouched(
    headers: list[tuple[bytes, bytes]],
) -> None:
    body = b"a" * 500
    reply = await call(gzipped(responder(headers=headers, body=body)), http_scope())
    assert reply.start["headers"] == headers
    assert reply.body == body


async def test_a_partial_response_passes_untouched() -> None:
    body = b"a" * 500
    reply = await call(gzipped(responder(206, body=body)), http_scope())
    assert reply.header("content-encoding") is None
    assert reply.body == body


async def test_a_stream_is_compressed_chunk_by_chunk_without_a_length() -> None:
    chunks = [b"first " * 50, b"second " * 50, b"third"]
    reply = await call(gzipped(streaming(chunks)), http_scope())
    bodies = [m["body"] for m in reply.messages if m["type"] == "http.response.body"]
    assert len(bodies) == 3
    assert all(bodies)  # every chunk is flushed as it comes, nothing held back
    assert zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bodies[0]) == chunks[0]
    assert gzip.decompress(b"".join(bodies)) == b"".join(chunks)
    assert reply.header("content-encoding") == "gzip"
    assert reply.headers("content-length") == []


async def test_a_small_first_chunk_of_a_stream_is_still_compressed() -> None:
    chunks = [b"a", b"b" * 10]
    reply = await call(gzipped(streaming(chunks)), http_scope())
    assert reply.header("content-encoding") == "gzip"
    assert gzip.decompress(reply.body) == b"".join(chunks)


async def test_with_trailers_the_length_is_dropped() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": [JSON], "trailers": True}
        await send(start)
        await send({"type": "http.response.body", "body": b"a" * 500})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})

    reply = await call(gzipped(app), http_scope())
    assert reply.headers("content-length") == []
    assert gzip.decompress(reply.body) == b"a" * 500
    assert reply.messages[-1] == {"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]}


async def test_pathsend_is_left_to_the_server() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [JSON]})
        await send({"type": "http.response.pathsend", "path": "/srv/file.json"})

    reply = await call(gzipped(app), http_scope())
    assert reply.messages == [
        {"type": "http.response.start", "status": 200, "headers": [JSON]},
        {"type": "http.response.pathsend", "path": "/srv/file.json"},
    ]


async def test_a_large_chunk_is_compressed_off_the_loop_and_small_ones_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[str] = []
    compress = gzip_module._compress_chunk

    def recording(compressor: zlib._Compress, body: bytes, more_body: bool) -> bytes:
        threads.append(threading.current_thread().name)
        return compress(compressor, body, more_body)

    monkeypatch.setattr(gzip_module, "_compress_chunk", recording)
    large = os.urandom(THREAD_MINIMUM_SIZE // 2).hex().encode()  # the threshold, compressible
    reply = await call(gzipped(responder(body=large)), http_scope())
    assert gzip.decompress(reply.body) == large
    assert reply.headers("content-length") == [str(len(reply.body))]
    small = await call(gzipped(responder(body=b"a" * 500)), http_scope())
    assert gzip.decompress(small.body) == b"a" * 500
    main = threading.current_thread().name
    assert threads[0].startswith("keel-gzip")  # its own threads, not the loop's executor
    assert threads[1] == main
