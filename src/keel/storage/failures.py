"""Storage failures as the rest of Keel sees them: an outage is a 503 with Retry-After.

botocore reports an unreachable or silent server as its own connection and timeout errors, and
a struggling one as a ClientError with a 5xx status (SlowDown, InternalError); aiohttp's errors
can also escape while a body streams. All of them mean "retry later", so they become one
`StorageUnavailable`. Any other ClientError (a missing key, a refused signature) is the
caller's to handle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from keel.errors import DependencyUnavailable

_OUTAGE_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})


class StorageUnavailable(DependencyUnavailable):
    def __init__(self) -> None:
        super().__init__("storage", "File storage is unavailable; retry later.")


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def status_code(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def is_outage(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        return status_code(error) >= 500 or error_code(error) in _OUTAGE_CODES
    return isinstance(
        error, BotocoreConnectionError | HTTPClientError | aiohttp.ClientError | TimeoutError
    )


@contextmanager
def outage_as_unavailable() -> Iterator[None]:
    """Inside: any storage outage raises StorageUnavailable (the original as its cause)."""
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as error:
        if is_outage(error):
            raise StorageUnavailable from error
        raise
