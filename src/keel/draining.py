"""Work that must end before the server closes its connections on a graceful shutdown.

Long-lived connections (a WebSocket, a stream of server-sent events) cannot wait for the drain
like a request does: they never end by themselves. Their owner registers a hook here; Keel's
gunicorn worker (keel.gunicorn_worker) runs the hooks after it stops accepting and before it
closes the connections, so each one ends the way its protocol says a restart should (with a
reconnect hint), not with a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

DrainHook = Callable[[], Awaitable[None]]

_hooks: list[DrainHook] = []


def on_drain(hook: DrainHook) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


def forget(hook: DrainHook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


async def drain(budget_seconds: float) -> None:
    """Run every hook at once, for at most `budget_seconds`."""
    if not _hooks:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(budget_seconds):
            await asyncio.gather(*(hook() for hook in list(_hooks)), return_exceptions=True)
