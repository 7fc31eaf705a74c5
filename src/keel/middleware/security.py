"""Security headers on every response; a stricter CSP for the API than for the docs pages."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# JSON needs no sources at all; nobody may frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc as FastAPI serves them: bundles from jsDelivr, an inline bootstrap script,
# ReDoc's Google fonts, inline styles and blob: web worker, the favicon, and /openapi.json.
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src 'self' https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "font-src https://fonts.gstatic.com; "
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
        self.docs_headers = _headers(DOCS_CSP, hsts_max_age)
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
