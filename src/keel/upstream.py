"""Whether a request's deadline found it waiting on an upstream HTTP call.

The shared httpx client (keel.resources) sends through `UpstreamTransport`. When a call through
it is cancelled (the request's deadline passed while it waited), the transport marks the
request's context, and keel.middleware.deadline answers 504 Gateway Timeout instead of 503: the
service itself is fine, the service it called was too slow.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

import httpx

# Set in the request's own context (the same task as the deadline layer), never reset by the
# transport: the deadline layer reads it after the cancellation has unwound the call.
_cancelled_upstream: ContextVar[bool] = ContextVar("keel_cancelled_upstream", default=False)


def cancelled_while_calling_upstream() -> bool:
    """True once per cancellation: the flag is cleared as it is read."""
    if not _cancelled_upstream.get():
        return False
    _cancelled_upstream.set(False)
    return True


class UpstreamTransport(httpx.AsyncBaseTransport):
    """Wraps the real transport; only notes cancellations, otherwise untouched."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except asyncio.CancelledError:
            _cancelled_upstream.set(True)
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()
