"""GZip above a size threshold, and no cost at all for clients that do not accept it."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class GZip:
    """GZip settings for `keel.middleware.body_limit.BodyLimitMiddleware`, which runs Starlette's
    GZipMiddleware around the body limit when the request accepts gzip (what Keel installs:
    one layer and one header scan instead of this one and the limit's)."""

    minimum_size: int
    compresslevel: int


class GZipIfAccepted:
    """Starlette's GZipMiddleware, entered only when the request accepts gzip.

    Starlette wraps every response, compressible or not, in a responder that parses the
    response headers and checks the content type (~80 Python calls per request, measured):
    for a client that never asked for gzip (probes, service-to-service calls) that is pure cost.
    """

    def __init__(self, app: ASGIApp, *, minimum_size: int, compresslevel: int) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=compresslevel)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    if b"gzip" in value:
                        await self.gzip(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
