"""The load client of the real-time benchmark: N event streams held by one process.

    python -m bench.events_load --mode fanout --url http://127.0.0.1:8000 --token TOKEN \\
        --connections 1000 --events 20 --trigger-url http://127.0.0.1:8000/publish

Each stream authenticates per Keel's protocol (WebSocket: the first message is {"token": ...};
SSE: `Authorization: Bearer`) and counts as ready once it got `stream.ready`. The WebSocket
client (the `websockets` library) offers permessage-deflate, as browsers do.

Modes:
  idle    open --warmup-connections, report `warm`; open --connections more, report `ready`;
          hold them until told to stop.
  fanout  open N; then --events single events one at a time, each caused by one POST to
          --trigger-url and awaited on every stream: commit-to-receipt latency (receipt wall time
          minus the frame's occurred_at) over all deliveries.
  burst   open N; --rate events/s for --seconds: deliveries per stream, streams closed with 1013.

Output: one JSON object per line on stdout, each with a `phase` (warm, ready, result, error).
With --gated the client waits for a line on stdin after `warm` and `ready` (the caller measures
the server at those moments); without it, it goes on at once (idle holds for --hold seconds).
Everything is bounded: --timeout ends the whole run, every wait has its own deadline, and
only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

EVENTS_PATH = "/api/v1/events"
CONTROL = frozenset({"stream.ready", "stream.gap", "stream.closing"})
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
# Handshakes in flight at once: more would only overflow the server's listen backlog.
OPEN_CONCURRENCY = 100
CONNECT_TIMEOUT = 20.0
# One event reaches every stream within this, or it counts as missing and the run goes on.
EVENT_TIMEOUT = 30.0
# After a burst: deliveries have ended when none arrived for QUIET seconds (or DRAIN_MAX passed).
QUIET = 1.0
DRAIN_MAX = 20.0
FD_HEADROOM = 256


class ConnectError(Exception):
    """A stream could not be opened or was refused before `stream.ready`."""


def raise_nofile(needed: int) -> bool:
    """Raise the soft limit of open files to `needed` (up to the hard limit): whether it fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted >= needed


def occurred_at(frame: dict[str, Any]) -> float:
    """The event's occurred_at in seconds since the epoch (ISO-8601 per the protocol)."""
    value = frame["occurred_at"]
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value).timestamp()


# --- streams ---


class Stream(Protocol):
    close_code: int | None

    async def receive(self) -> str | None:
        """The next message's JSON text; None once the stream has ended."""

    async def close(self) -> None: ...


class WebSocketStream:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.close_code: int | None = None

    @classmethod
    async def open(cls, url: str, token: str, compression: bool) -> WebSocketStream:
        socket = await connect(
            url,
            compression="deflate" if compression else None,
            proxy=None,
            open_timeout=CONNECT_TIMEOUT,
            ping_interval=None,  # as a browser: the server decides about keepalive pings
            close_timeout=2,
        )
        await socket.send(json.dumps({"token": token}))
        return cls(socket)

    async def receive(self) -> str | None:
        try:
            message = await self.socket.recv()
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else 1006
            return None
        return message if isinstance(message, str) else message.decode()

    async def close(self) -> None:
        await self.socket.close()


class SseStream:
    """text/event-stream over a raw HTTP/1.1 connection (chunked or not): the `data` of each
    message; comments (heartbeats) are skipped."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunked: bool
    ) -> None:
        self.reader, self.writer, self.chunked = reader, writer, chunked
        self.buffer = b""
        self.close_code: int | None = None

    @classmethod
    async def open(cls, host: str, port: int, token: str) -> SseStream:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        writer.write(
            f"GET {EVENTS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        status = int(status_line.split()[1])
        if status != 200 or not headers.get("content-type", "").startswith("text/event-stream"):
            writer.close()
            raise ConnectError(f"SSE answered {status} {headers.get('content-type', '')}")
        return cls(reader, writer, headers.get("transfer-encoding") == "chunked")

    async def _read_body(self) -> bytes:
        """The next bytes of the body; b"" at its end."""
        if not self.chunked:
            return await self.reader.read(65536)
        size = int((await self.reader.readline()).split(b";")[0] or b"0", 16)
        return (await self.reader.readexactly(size + 2))[:-2] if size else b""

    async def receive(self) -> str | None:
        while True:
            end = self.buffer.find(b"\n\n")
            if end < 0:
                try:
                    chunk = await self._read_body()
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    chunk = b""
                if not chunk:
                    return None
                self.buffer += chunk
                continue
            message, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            data = [line[5:].lstrip() for line in message.split(b"\n") if line.startswith(b"data:")]
            if data:
                return b"\n".join(data).decode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


# --- the tally ---


@dataclass
class Link:
    """One stream and what it received."""

    stream: Stream
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    is_ready: bool = False
    delivered: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.task is not None and not self.task.done()


@dataclass
class Tally:
    """Every delivery's latency, the streams' close codes, and a target to wait for."""

    delivered: int = 0
    latencies: list[float] = field(default_factory=list)
    closes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    target: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, latency: float) -> None:
        self.delivered += 1
        self.latencies.append(latency)
        if self.delivered >= self.target:
            self.reached.set()

    def expect(self, target: int) -> None:
        self.target = target
        if self.delivered >= target:
            self.reached.set()
        else:
            self.reached.clear()


async def consume(link: Link, tally: Tally) -> None:
    try:
        while (text := await link.stream.receive()) is not None:
            received = time.time()
            frame = json.loads(text)
            kind = frame.get("type")
            if kind == "stream.ready":
                link.is_ready = True
                link.ready.set()
            elif kind not in CONTROL:
                link.delivered += 1
                tally.deliver(received - occurred_at(frame))
        tally.closes[str(link.stream.close_code or "ended")] += 1
    finally:
        link.ready.set()  # also when it ended before stream.ready: the opener stops waiting


# --- opening streams ---


@dataclass(frozen=True)
class Target:
    url: str
    token: str
    transport: str
    compression: bool

    async def open_stream(self) -> Stream:
        address = urlsplit(self.url)
        host, port = address.hostname or "", address.port or 80
        if self.transport == "sse":
            return await SseStream.open(host, port, self.token)
        ws_url = f"ws://{host}:{port}{EVENTS_PATH}"
        return await WebSocketStream.open(ws_url, self.token, self.compression)


async def open_link(target: Target, tally: Tally, gate: asyncio.Semaphore) -> Link | None:
    """One stream, authenticated and ready; None (and a noted failure) otherwise."""
    async with gate:
        try:
            stream = await target.open_stream()
        except (OSError, WebSocketException, TimeoutError, ConnectError, ValueError) as error:
            tally.failures[f"{type(error).__name__}: {error}"[:200]] += 1
            return None
        link = Link(stream)
        link.task = asyncio.create_task(consume(link, tally))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await link.ready.wait()
    if not link.is_ready:
        code = stream.close_code
        tally.failures[f"no stream.ready (closed: {code or 'not by the server'})"] += 1
        await close_links([link])
        return None
    return link


async def open_links(target: Target, tally: Tally, count: int) -> list[Link]:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    opened = await asyncio.gather(*(open_link(target, tally, gate) for _ in range(count)))
    return [link for link in opened if link is not None]


async def close_links(links: Sequence[Link]) -> None:
    """Close every stream, within 15 s; whatever is left is cancelled."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(15):
            await asyncio.gather(*(link.stream.close() for link in links), return_exceptions=True)
    for link in links:
        if link.task is not None:
            link.task.cancel()


# --- triggering events ---


class Trigger:
    """Causes one event per call: a POST (Keel: an item; the reference: /publish)."""

    def __init__(self, url: str, headers: dict[str, str], body: str) -> None:
        self.url, self.body = url, body.encode()
        self.headers = {**headers, "Content-Type": "application/json"}
        self.client = httpx.AsyncClient(
            timeout=10.0, trust_env=False, limits=httpx.Limits(max_connections=16)
        )
        self.failures: Counter[str] = Counter()

    async def fire(self) -> bool:
        try:
            response = await self.client.post(self.url, content=self.body, headers=self.headers)
        except httpx.HTTPError as error:
            self.failures[f"{type(error).__name__}: {error}"[:200]] += 1
            return False
        if response.is_success:
            return True
        self.failures[f"{response.status_code}: {response.text[:150]}"] += 1
        return False

    async def aclose(self) -> None:
        await self.client.aclose()


async def one_event(links: Sequence[Link], tally: Tally, trigger: Trigger) -> int:
    """Fire one event and wait until every open stream has it: how many never got it."""
    tally.expect(tally.delivered + sum(1 for link in links if link.open))
    if not await trigger.fire():
        raise ConnectError(f"the trigger POST failed: {dict(trigger.failures)}")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(EVENT_TIMEOUT):
            await tally.reached.wait()
    return max(0, tally.target - tally.delivered)


def percentile(ordered: Sequence[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def latency_figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] if ordered else 0.0) * 1000,
    }


# --- the modes ---


@dataclass
class Session:
    args: argparse.Namespace
    target: Target
    tally: Tally
    wait_for_go: Callable[[float], Awaitable[None]]
    links: list[Link] = field(default_factory=list)

    async def open(self, count: int, phase: str) -> None:
        started = time.monotonic()
        opened = await open_links(self.target, self.tally, count)
        self.links += opened
        if count and not opened:
            raise ConnectError(f"no stream opened: {dict(self.tally.failures)}")
        emit(
            phase,
            opened=len(opened),
            failed=sum(self.tally.failures.values()),
            seconds=round(time.monotonic() - started, 3),
            failures=dict(self.tally.failures.most_common(5)),
        )


async def idle(session: Session) -> dict[str, Any]:
    await session.open(session.args.warmup_connections, "warm")
    await session.wait_for_go(0)
    await session.open(session.args.connections, "ready")
    await session.wait_for_go(session.args.hold)
    return {"open": sum(1 for link in session.links if link.open)}


async def warm_up(session: Session, trigger: Trigger) -> None:
    """Open the streams and send one event, not counted: the first of anything (a worker's
    job, a code path) is slow. Then `ready`, and the measured part starts when told."""
    await session.open(session.args.connections, "opened")
    await one_event(session.links, session.tally, trigger)
    session.tally.latencies.clear()
    emit("ready")
    await session.wait_for_go(0)


async def fanout(session: Session, trigger: Trigger) -> dict[str, Any]:
    await warm_up(session, trigger)
    missing = 0
    for _ in range(session.args.events):
        missing += await one_event(session.links, session.tally, trigger)
    return {
        **latency_figures(session.tally.latencies),
        "deliveries": len(session.tally.latencies),
        "missing": missing,
        "events": session.args.events,
    }


async def burst(session: Session, trigger: Trigger) -> dict[str, Any]:
    await warm_up(session, trigger)
    before = {id(link): link.delivered for link in session.links}
    fired = await fire_at_rate(trigger, session.args.rate, session.args.seconds)
    await wait_quiet(session.tally)
    counts = sorted(link.delivered - before[id(link)] for link in session.links)
    return {
        **latency_figures(session.tally.latencies),
        "events": fired,
        "post_failures": dict(trigger.failures.most_common(5)),
        "deliveries": sum(counts),
        "expected": fired * len(counts),
        "per_stream_min": counts[0] if counts else 0,
        "per_stream_median": statistics.median(counts) if counts else 0,
        "per_stream_max": counts[-1] if counts else 0,
        "closed_1013": session.tally.closes.get("1013", 0),
    }


async def fire_at_rate(trigger: Trigger, rate: float, seconds: float) -> int:
    """`rate` POSTs a second for `seconds`, each at its scheduled time (not after the previous
    answer): how many succeeded."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    posts: list[asyncio.Task[bool]] = []
    for number in range(round(rate * seconds)):
        await asyncio.sleep(max(0.0, start + number / rate - loop.time()))
        posts.append(asyncio.create_task(trigger.fire()))
    async with asyncio.timeout(30):
        results = await asyncio.gather(*posts)
    return sum(results)


async def wait_quiet(tally: Tally) -> None:
    """Until no delivery arrived for QUIET seconds, at most DRAIN_MAX."""
    deadline = time.monotonic() + DRAIN_MAX
    seen, quiet_since = tally.delivered, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < QUIET:
        await asyncio.sleep(0.1)
        if tally.delivered != seen:
            seen, quiet_since = tally.delivered, time.monotonic()


# --- the process ---


def emit(phase: str, **figures: Any) -> None:
    print(json.dumps({"phase": phase, **figures}), flush=True)


async def stdin_gate(gated: bool) -> Callable[[float], Awaitable[None]]:
    """wait(hold): gated, until the next stdin line (or its end); otherwise `hold` seconds."""
    if not gated:
        return asyncio.sleep
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def wait(_hold: float) -> None:
        await reader.readline()

    return wait


async def run(args: argparse.Namespace) -> dict[str, Any]:
    target = Target(args.url, args.token, args.transport, not args.no_compression)
    session = Session(args, target, Tally(), await stdin_gate(args.gated))
    trigger = Trigger(args.trigger_url, dict(args.trigger_header), args.trigger_body)
    try:
        if args.mode == "idle":
            figures = await idle(session)
        elif args.mode == "fanout":
            figures = await fanout(session, trigger)
        else:
            figures = await burst(session, trigger)
        closes = dict(session.tally.closes)
        return {**figures, "streams": len(session.links), "closes": closes}
    finally:
        await trigger.aclose()
        await close_links(session.links)


async def bounded(args: argparse.Namespace) -> int:
    try:
        async with asyncio.timeout(args.timeout):
            result = await run(args)
    except TimeoutError:
        emit("error", error=f"the run did not finish within {args.timeout:g} s")
        return 2
    except ConnectError as error:
        emit("error", error=str(error))
        return 1
    emit("result", **result)
    return 0


def header(text: str) -> tuple[str, str]:
    name, _, value = text.partition(":")
    return name.strip(), value.strip()


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="N event streams held by one process.")
    parser.add_argument("--mode", choices=("idle", "fanout", "burst"), required=True)
    parser.add_argument("--url", required=True, help="the server's base URL (127.0.0.1 only)")
    parser.add_argument("--token", default="bench", help="the access token the streams send")
    parser.add_argument("--transport", choices=("ws", "sse"), default="ws")
    parser.add_argument("--no-compression", action="store_true", help="offer no deflate")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--warmup-connections", type=int, default=20, help="idle mode")
    parser.add_argument("--hold", type=float, default=10.0, help="idle mode, not gated: seconds")
    parser.add_argument("--events", type=int, default=10, help="fanout mode")
    parser.add_argument("--rate", type=float, default=100.0, help="burst mode: events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="burst mode: its duration")
    parser.add_argument("--trigger-url", default="", help="the POST that causes one event")
    parser.add_argument("--trigger-header", type=header, action="append", default=[])
    parser.add_argument("--trigger-body", default='{"title": "event bench"}')
    parser.add_argument("--gated", action="store_true", help="wait for a stdin line per phase")
    parser.add_argument("--timeout", type=float, default=300.0, help="the whole run, seconds")
    args = parser.parse_args(argv)
    for url in filter(None, (args.url, args.trigger_url)):
        if urlsplit(url).hostname not in LOCAL_HOSTS:
            parser.error(f"only 127.0.0.1 is allowed: {url}")
    if args.mode != "idle" and not args.trigger_url:
        parser.error(f"--mode {args.mode} needs --trigger-url")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    raise_nofile(args.connections + args.warmup_connections + FD_HEADROOM)
    return asyncio.run(bounded(args))


if __name__ == "__main__":
    raise SystemExit(main())
