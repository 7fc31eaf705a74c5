"""Cache-Control and Vary: a safe default policy, and routes that declare their own.

Default, when the response did not set `Cache-Control` itself:

* mutations (POST, PUT, PATCH, DELETE) and every error response: `no-store`;
* GET/HEAD with credentials (Authorization or Cookie): `private, no-cache`;
* other GET/HEAD: `no-cache` (a cache may keep it but must revalidate).

A route declares its own policy with `openapi_extra=cache_policy("public, max-age=60,
s-maxage=300")` (it also shows in the OpenAPI document); it applies to its successful GET/HEAD
responses. Every storable GET/HEAD response gets `Vary: Authorization, Accept-Encoding`, merged
with any `Vary` already there, so no shared cache serves one caller's or one encoding's copy to
another.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHE_POLICY_KEY = "x-cache-control"

NO_STORE = b"no-store"
PRIVATE = b"private, no-cache"
REVALIDATE = b"no-cache"
_READS = frozenset({"GET", "HEAD"})
_VARY_ON = ("Authorization", "Accept-Encoding")


def cache_policy(value: str) -> dict[str, Any]:
    """`openapi_extra` for a route that declares its own Cache-Control."""
    return {CACHE_POLICY_KEY: value}


def _declared(scope: Scope) -> bytes | None:
    extra = getattr(scope.get("route"), "openapi_extra", None)
    if extra:
        value = extra.get(CACHE_POLICY_KEY)
        if isinstance(value, str):
            return value.encode("latin-1")
    return None


_VARY = b"Authorization, Accept-Encoding"


def _merge_vary(current: bytes | None) -> bytes:
    if not current:
        return _VARY
    text = current.decode("latin-1")
    if text.strip() == "*":
        return current
    present = {part.strip().lower() for part in text.split(",") if part.strip()}
    missing = [name for name in _VARY_ON if name.lower() not in present]
    return (text + "".join(f", {name}" for name in missing)).encode("latin-1")


class CacheControlMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        is_read = scope["method"] in _READS

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._apply(scope, is_read, message)
            await send(message)

        await self.app(scope, receive, send_with_policy)

    @staticmethod
    def _apply(scope: Scope, is_read: bool, message: Message) -> list[tuple[bytes, bytes]]:
        headers = list(message.get("headers", ()))
        cache_control = vary = None
        vary_at = -1
        # Names are lower-case in ASGI responses (Starlette lowercases them).
        for index, (name, value) in enumerate(headers):
            if name == b"cache-control":
                cache_control = value
            elif name == b"vary":
                vary, vary_at = value, index
        if cache_control is None:
            if not is_read or message["status"] >= 400:
                cache_control = NO_STORE
            else:
                cache_control = _declared(scope) or _credentialed(scope)
            headers.append((b"cache-control", cache_control))
        if is_read and cache_control is not NO_STORE and b"no-store" not in cache_control:
            merged = _merge_vary(vary)
            if vary_at >= 0:
                headers[vary_at] = (b"vary", merged)
            else:
                headers.append((b"vary", merged))
        return headers


def _credentialed(scope: Scope) -> bytes:
    for name, _ in scope["headers"]:
        if name in (b"authorization", b"cookie"):
            return PRIVATE
    return REVALIDATE
