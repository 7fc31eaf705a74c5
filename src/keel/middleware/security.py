"""Security headers on every response; a stricter CSP for the API than for the docs pages.

Outside the layers that answer themselves, so errors, 413s and CORS preflights get them too.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Scope

from keel.middleware.composed import Concern, ResponseHeaders

# JSON needs no sources at all; nobody may frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def docs_csp() -> str:
    """/docs and /redoc as keel.api.docs serves them: scripts, styles, images and requests from
    the app itself only, no inline script. What else each page needs, each found blocked in
    Chromium without it (tests/api/test_docs_browser.py): inline styles (ReDoc injects <style>
    elements), data: images (icons in Swagger UI's and ReDoc's styles), a blob: worker (ReDoc's
    search index)."""
    return (
        "default-src 'none'; "
        "script-src 'self'; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "connect-src 'self'; "
        "worker-src blob:; "
        "base-uri 'none'; "
        "form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _headers(csp: str, hsts_max_age: int | None) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", csp.encode()),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]
    if hsts_max_age is not None:
        headers.append(
            (b"strict-transport-security", f"max-age={hsts_max_age}; includeSubDomains".encode())
        )
    return headers


class SecurityHeaders(Concern):
    """The header lists are built once. A response that set none of these headers (the common
    case) gets its path's list appended as it is; one that already set some keeps its own (a
    route may choose its own CSP) and gets every other one."""

    def __init__(self, *, docs_paths: Iterable[str] = (), hsts_max_age: int | None = None) -> None:
        self.docs_paths = frozenset(docs_paths)
        self.api_headers = _headers(API_CSP, hsts_max_age)
        self.docs_headers = _headers(docs_csp(), hsts_max_age)
        self.names = frozenset(name for name, _ in self.api_headers)

    def on_response_start(self, scope: Scope, status: int, headers: ResponseHeaders) -> None:
        names = self.names
        # Names are lower-case in ASGI responses (Starlette lowercases them).
        for name, _ in headers:
            if name in names:
                self._merge(headers, scope["path"])
                return
        headers.extend(self.docs_headers if scope["path"] in self.docs_paths else self.api_headers)

    def _merge(self, headers: ResponseHeaders, path: str) -> None:
        present = {name for name, _ in headers if name in self.names}
        extra = self.docs_headers if path in self.docs_paths else self.api_headers
        headers.extend(item for item in extra if item[0] not in present)
