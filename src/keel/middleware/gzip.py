"""GZip above a size threshold, and no cost at all for clients that do not accept it.

Starlette's GZipMiddleware wraps every response in a responder that parses its headers (~80
Python calls per request, measured); Keel enters it only when the request accepts gzip, inside
the body-limit layer (`keel.middleware.body_limit`), which already scans the request headers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GZip:
    """GZip settings for `keel.middleware.body_limit.BodyLimitMiddleware`."""

    minimum_size: int
    compresslevel: int
