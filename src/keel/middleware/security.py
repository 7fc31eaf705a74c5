"""Security headers on every response; a stricter CSP for the API than for the docs pages."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# JSON needs no sources at all; nobody may frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _docs_asset_origins() -> tuple[str, str]:
    """(script/style origin, image origin) of the assets FastAPI's docs pages load by default.

    Read from FastAPI's own defaults rather than written here, so the policy follows FastAPI
    when it moves its assets; if you self-host them, pass your URLs and tighten this policy.
    """
    swagger = inspect.signature(get_swagger_ui_html).parameters
    scripts = _origin(swagger["swagger_js_url"].default)
    favicon = _origin(swagger["swagger_favicon_url"].default)
    return scripts, favicon


def docs_csp() -> str:
    """Swagger UI and ReDoc as FastAPI serves them: bundles from a CDN, an inline bootstrap
    script, ReDoc's web fonts, inline styles and blob: web worker, the favicon, /openapi.json."""
    scripts, favicon = _docs_asset_origins()
    fonts_css = "https://fonts.googleapis.com"
    fonts = "https://fonts.gstatic.com"
    return (
        "default-src 'none'; "
        f"script-src 'self' {scripts} 'unsafe-inline'; "
        f"style-src 'self' {scripts} {fonts_css} 'unsafe-inline'; "
        f"img-src 'self' data: {favicon} https://cdn.redoc.ly; "
        f"font-src {fonts}; "
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


class SecurityHeadersMiddleware:
    """Adds each header unless the response already set it (a route may choose its own CSP)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        docs_paths: Iterable[str] = (),
        hsts_max_age: int | None = None,
    ) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)
        self.api_headers = _headers(API_CSP, hsts_max_age)
        self.docs_headers = _headers(docs_csp(), hsts_max_age)
        self.names = frozenset(name for name, _ in self.api_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = self.docs_headers if scope["path"] in self.docs_paths else self.api_headers
        names = self.names

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # Names are lower-case in ASGI responses (Starlette lowercases them).
                present = [key for key, _ in headers if key in names]
                if present:
                    headers.extend(item for item in extra if item[0] not in present)
                else:
                    headers.extend(extra)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
