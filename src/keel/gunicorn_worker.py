"""Keel's gunicorn worker: uvicorn-worker's UvicornWorker with a shutdown that loses nothing.

Measured with the stock `uvicorn_worker.UvicornWorker` (gunicorn 27, uvicorn 0.54):

* gunicorn's `graceful_timeout` never reaches uvicorn, whose `timeout_graceful_shutdown` is None
  (wait forever): a drain longer than the budget ends in SIGKILL and the lifespan shutdown never
  runs;
* SIGQUIT / SIGINT (gunicorn's "quick shutdown") only set a flag nobody reads, so the workers keep
  serving until the master SIGKILLs them `graceful_timeout` later;
* on SIGTERM (and so on every `kill -HUP` reload and every `max_requests` restart) uvicorn closes
  idle keep-alive connections at once; a client that is sending its next request on one of them
  at that moment sees a reset: 50-75 failed requests per reload under 50 keep-alive clients.

This worker fixes all three:

* **Budget.** The drain gets `graceful_timeout - SHUTDOWN_RESERVE_SECONDS`; the reserve pays for
  cancelling what is left (those requests get a 500 with `Connection: close`), the application's
  lifespan shutdown (bounded by `LIFESPAN_SHUTDOWN_TIMEOUT`) and process exit, so the worker is
  gone before the master would SIGKILL it. The worker keeps heart-beating during the drain, so the
  master's `timeout` watchdog does not abort a draining worker either.
* **Quick shutdown.** SIGQUIT and SIGINT stop accepting at once, cancel in-flight requests, give
  the lifespan shutdown `QUICK_LIFESPAN_SHUTDOWN_TIMEOUT` and exit.
* **No reset keep-alive connections.** On a graceful shutdown an idle keep-alive connection is not
  closed: the next request on it is served with `Connection: close`, and if none comes it is closed
  by its own keep-alive timer, exactly when it would have been closed without a shutdown. A request
  in flight is answered with `Connection: close`.

It also pins the fast path (uvloop + httptools; failing loudly if either is missing instead of
silently falling back), turns uvicorn's access log off (the access log comes from Keel's
middleware) and enables proxy headers only when `forwarded_allow_ips` is configured.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from keel import draining

__all__ = [
    "LIFESPAN_SHUTDOWN_TIMEOUT",
    "QUICK_LIFESPAN_SHUTDOWN_TIMEOUT",
    "SHUTDOWN_RESERVE_SECONDS",
    "DrainingHttpToolsProtocol",
    "DrainingServer",
    "KeelUvicornWorker",
    "drain_timeout_for",
]

# Event streams get at most this long to write what is queued and their reconnect hint.
STREAM_DRAIN_SECONDS = 3.0
# graceful_timeout = drain + SHUTDOWN_RESERVE_SECONDS (gunicorn.conf.py computes it this way).
SHUTDOWN_RESERVE_SECONDS = 5.0
# What the reserve pays for: cancelled requests answer (CANCEL_GRACE), the lifespan shutdown
# closes pools (LIFESPAN_SHUTDOWN_TIMEOUT), the interpreter exits (the rest, >= 1 s).
CANCEL_GRACE_SECONDS = 0.5
LIFESPAN_SHUTDOWN_TIMEOUT = 3.0
QUICK_LIFESPAN_SHUTDOWN_TIMEOUT = 0.5
_POLL_SECONDS = 0.1

logger = logging.getLogger("uvicorn.error")


def drain_timeout_for(graceful_timeout: float) -> float:
    """The part of gunicorn's `graceful_timeout` that in-flight requests may use."""
    return graceful_timeout - SHUTDOWN_RESERVE_SECONDS


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    """httptools protocol whose graceful shutdown never resets an idle keep-alive connection."""

    draining = False

    def shutdown(self) -> None:
        self.draining = True
        cycle: Any = self.cycle  # typed non-optional upstream, but None before the first request
        if cycle is not None and not cycle.response_complete:
            # In flight: finish it, then close (the response carries `Connection: close`).
            cycle.keep_alive = False
            return
        # Idle. Closing now races with a request the client may be sending this very moment.
        # Leave it to the keep-alive timer (armed after every response; armed here for a
        # connection that has not sent anything yet); a request arriving before that is
        # served with `Connection: close` (see on_headers_complete).
        if self.timeout_keep_alive_task is None and not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle: Any = self.cycle
        if self.draining and cycle is not None:
            cycle.keep_alive = False


class DrainingServer(Server):
    """uvicorn Server with a bounded drain, a quick mode, and a bounded lifespan shutdown."""

    def __init__(
        self,
        config: Config,
        *,
        drain_timeout: float,
        lifespan_shutdown_timeout: float = LIFESPAN_SHUTDOWN_TIMEOUT,
    ) -> None:
        super().__init__(config)
        self.drain_timeout = drain_timeout
        self.lifespan_shutdown_timeout = lifespan_shutdown_timeout
        self.quick = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # gunicorn's convention: TERM is graceful, INT and QUIT are quick.
        if sig in (signal.SIGINT, signal.SIGQUIT):
            self.quick = True
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        started = time.monotonic()
        self._stop_listening(sockets)
        if not self.quick:
            # Long-lived streams end the way their protocol says a restart should, before the
            # connections are told to close (keel.draining).
            await draining.drain(min(STREAM_DRAIN_SECONDS, self.drain_timeout / 2))
        self._shutdown_connections()
        state = self.server_state
        if self.quick:
            logger.info("Quick shutdown: cancelling %d request(s)", len(state.tasks))
        else:
            logger.info(
                "Graceful shutdown: draining %d connection(s), %d request(s), budget %.1fs",
                len(state.connections),
                len(state.tasks),
                self.drain_timeout,
            )
            await self._drain(started + self.drain_timeout)
        await self._cancel_remaining_requests()
        for connection in list(state.connections):
            connection.transport.close()
        await self._shutdown_lifespan()
        logger.info("Worker shutdown took %.2fs", time.monotonic() - started)

    def _stop_listening(self, sockets: list[socket.socket] | None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()

    def _shutdown_connections(self) -> None:
        """Tell each open connection (`DrainingHttpToolsProtocol.shutdown`)."""
        for connection in list(self.server_state.connections):
            connection.shutdown()

    async def _cancel_remaining_requests(self) -> None:
        """Cancel the requests still running (all of them in a quick shutdown), with a grace."""
        state = self.server_state
        if not state.tasks:
            return
        if not self.quick:
            logger.error(
                "Drain budget of %.1fs exceeded: cancelling %d request(s)",
                self.drain_timeout,
                len(state.tasks),
            )
        tasks = list(state.tasks)
        for task in tasks:
            task.cancel(msg="worker shutdown")
        # Cancelled requests answer 500 with `Connection: close` (uvicorn's run_asgi).
        await asyncio.wait(tasks, timeout=CANCEL_GRACE_SECONDS)

    async def _shutdown_lifespan(self) -> None:
        """The application's lifespan shutdown, bounded so the worker exits within its budget."""
        timeout = QUICK_LIFESPAN_SHUTDOWN_TIMEOUT if self.quick else self.lifespan_shutdown_timeout
        try:
            await asyncio.wait_for(self.lifespan.shutdown(), timeout=timeout)
        except TimeoutError:
            logger.error("Application shutdown did not finish within %.1fs", timeout)

    async def _drain(self, deadline: float) -> None:
        state = self.server_state
        while (state.connections or state.tasks) and not self.quick:
            now = time.monotonic()
            if now >= deadline:
                return
            # Keep the heartbeat going: the master's `timeout` watchdog must not SIGABRT a
            # worker that is draining (it runs during HUP reloads and max_requests restarts).
            notify = self.config.callback_notify
            wall = time.time()  # uvicorn keeps last_notified in wall-clock time
            if notify is not None and wall - self.last_notified > self.config.timeout_notify:
                self.last_notified = wall
                await notify()
            await asyncio.sleep(min(_POLL_SECONDS, deadline - now))


class KeelUvicornWorker(UvicornWorker):  # type: ignore[misc]  # gunicorn's base class is untyped
    """The worker class named by gunicorn.conf.py."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": DrainingHttpToolsProtocol,
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        # feature: realtime
        # WebSockets (the events stream): the sans-I/O implementation, without per-message
        # deflate, which more than doubles each idle socket's memory for events of a few
        # hundred bytes (docs/realtime.md).
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        # end feature: realtime
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drain_timeout = drain_timeout_for(float(self.cfg.graceful_timeout))
        # Proxy headers are trusted only from the addresses the operator configured.
        if self.cfg.forwarded_allow_ips:
            self.config.proxy_headers = True
        self.config.timeout_graceful_shutdown = int(self.drain_timeout)
        self._server: DrainingServer | None = None
        self._pending_signals: list[int] = []

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        graceful = float(cfg.graceful_timeout)
        drain = drain_timeout_for(graceful)
        if drain < 1:
            raise RuntimeError(
                f"graceful_timeout={graceful:g}s leaves {drain:g}s to drain requests: it must be "
                f"at least {SHUTDOWN_RESERVE_SECONDS + 1:g}s (drain + "
                f"{SHUTDOWN_RESERVE_SECONDS:g}s for the lifespan shutdown and exit)"
            )
        if cfg.keepalive > drain:
            log.warning(
                "keepalive=%ss is longer than the drain budget %.1fs: idle keep-alive "
                "connections will be closed by the drain deadline, not by their own timer",
                cfg.keepalive,
                drain,
            )

    def init_signals(self) -> None:
        super().init_signals()
        # Until the server runs (and after it), remember TERM/INT/QUIT and forward them to it.
        # uvicorn installs its own TERM/INT handlers while serving; QUIT stays with us.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, self._on_exit_signal)

    def _on_exit_signal(self, sig: int, frame: FrameType | None) -> None:
        self.alive = False
        if self._server is None:
            self._pending_signals.append(sig)
        else:
            self._server.handle_exit(sig, frame)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(self.config, drain_timeout=self.drain_timeout)
        self._server = server
        for sig in self._pending_signals:
            server.handle_exit(sig, None)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
