"""Cache-Control and Vary: a safe default policy, and routes that declare their own.

Default, when the response did not set `Cache-Control` itself:

* mutations (POST, PUT, PATCH, DELETE) and every error response: `no-store`;
* GET/HEAD with credentials (Authorization or Cookie): `private, no-cache`;
* other GET/HEAD: `no-cache` (a cache may keep it but must revalidate).

A route declares its own policy with `openapi_extra=cache_policy("public, max-age=60,
s-maxage=300")` (it also shows in the OpenAPI document); it applies to its successful GET/HEAD
responses. Every storable GET/HEAD response gets `Vary: Authorization, Accept-Encoding`, merged
with any `Vary` already there, so no shared cache serves one caller's or one encoding's copy to
another. This concern runs outside the gzip layer, so gzip's `Vary: Accept-Encoding` is merged
into, not doubled.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from keel.middleware.composed import Concern, ResponseHeaders

CACHE_POLICY_KEY = "x-cache-control"

NO_STORE = b"no-store"
PRIVATE = b"private, no-cache"
REVALIDATE = b"no-cache"
_READS = frozenset({"GET", "HEAD"})
_VARY_ON = ("Authorization", "Accept-Encoding")


def cache_policy(value: str) -> dict[str, Any]:
    """`openapi_extra` for a route that declares its own Cache-Control."""
    return {CACHE_POLICY_KEY: value}


# Declared policies, encoded once each: they are string literals in route decorators, so this
# holds as many entries as the code declares, never one per request.
_encoded_policies: dict[str, bytes] = {}


def _declared(scope: Scope) -> bytes | None:
    extra = getattr(scope.get("route"), "openapi_extra", None)
    if extra:
        value = extra.get(CACHE_POLICY_KEY)
        if isinstance(value, str):
            encoded = _encoded_policies.get(value)
            if encoded is None:
                encoded = _encoded_policies[value] = value.encode("latin-1")
            return encoded
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


# What a response that set neither Cache-Control nor Vary gets (the common case), built once.
_NO_STORE_HEADERS = ((b"cache-control", NO_STORE),)
_PRIVATE_HEADERS = ((b"cache-control", PRIVATE), (b"vary", _VARY))
_REVALIDATE_HEADERS = ((b"cache-control", REVALIDATE), (b"vary", _VARY))
# The response headers that, set by the response itself, need merging.
_NAMES = frozenset({b"cache-control", b"vary"})
# Request headers that make a read private to its caller.
_CREDENTIALS = frozenset({b"authorization", b"cookie"})


class CacheHeaders(Concern):
    def on_response_start(self, scope: Scope, status: int, headers: ResponseHeaders) -> None:
        # Names are lower-case in ASGI responses (Starlette lowercases them).
        for name, _ in headers:
            if name in _NAMES:
                _merge_cache_headers(headers, scope, status)
                return
        # The common case, a response that set neither header: append what was built once.
        if status >= 400 or scope["method"] not in _READS:
            headers.extend(_NO_STORE_HEADERS)
            return
        declared = _declared(scope)
        if declared is None:
            # Inline rather than `_credentialed`: this runs on every read, and the call would
            # cost about as much as the scan.
            for name, _ in scope["headers"]:
                if name in _CREDENTIALS:  # Authorization or Cookie: private to its caller
                    headers.extend(_PRIVATE_HEADERS)
                    return
            headers.extend(_REVALIDATE_HEADERS)
        elif b"no-store" in declared:
            headers.append((b"cache-control", declared))
        else:
            headers.extend(((b"cache-control", declared), (b"vary", _VARY)))


def _credentialed(scope: Scope) -> bool:
    """The request carries Authorization or Cookie."""
    return any(name in _CREDENTIALS for name, _ in scope["headers"])


def _merge_cache_headers(headers: ResponseHeaders, scope: Scope, status: int) -> None:
    """Cache-Control (unless the response set one) and, on storable reads, the merged Vary."""
    cache_control = vary = None
    for name, value in headers:
        if name == b"cache-control":
            cache_control = value
        elif name == b"vary":
            vary = value
    is_read = scope["method"] in _READS
    if cache_control is None:
        if not is_read or status >= 400:
            cache_control = NO_STORE
        else:
            cache_control = _declared(scope) or (PRIVATE if _credentialed(scope) else REVALIDATE)
        headers.append((b"cache-control", cache_control))
    if is_read and cache_control is not NO_STORE and b"no-store" not in cache_control:
        if vary is None:
            headers.append((b"vary", _VARY))
        else:  # merge into the response's own (the last one, if it sent several)
            at = max(index for index, (name, _) in enumerate(headers) if name == b"vary")
            headers[at] = (b"vary", _merge_vary(vary))
