"""The one error type of the service layer; rendered as RFC 9457 problem+json at the edge.

Services, repositories and jobs raise these; they know nothing of HTTP beyond a status code,
so the same service function works outside a request too (a command, a background job).
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "about:blank"
    title: ClassVar[str] = "Internal Server Error"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions
        self.headers: dict[str, str] = {}


class BadRequest(AppError):
    status = 400
    type = "/problems/bad-request"
    title = "Bad Request"


class Unauthorized(AppError):
    status = 401
    type = "/problems/unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers["WWW-Authenticate"] = "Bearer"


class Forbidden(AppError):
    status = 403
    type = "/problems/forbidden"
    title = "Forbidden"


class NotFound(AppError):
    status = 404
    type = "/problems/not-found"
    title = "Not Found"


class Conflict(AppError):
    status = 409
    type = "/problems/conflict"
    title = "Conflict"


class PreconditionFailed(AppError):
    status = 412
    type = "/problems/precondition-failed"
    title = "Precondition Failed"


class PayloadTooLarge(AppError):
    status = 413
    type = "/problems/payload-too-large"
    title = "Payload Too Large"


class UnsupportedMediaType(AppError):
    status = 415
    type = "/problems/unsupported-media-type"
    title = "Unsupported Media Type"


class RangeNotSatisfiable(AppError):
    status = 416
    type = "/problems/range-not-satisfiable"
    title = "Range Not Satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"The range asked for is outside the {size} bytes of the file.")
        self.headers["Content-Range"] = f"bytes */{size}"


class Unprocessable(AppError):
    status = 422
    type = "/problems/validation-error"
    title = "Unprocessable Content"


class TooManyRequests(AppError):
    status = 429
    type = "/problems/too-many-requests"
    title = "Too Many Requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(retry_after)


class DependencyUnavailable(AppError):
    """A backing service (database, Redis, an upstream) is down or too slow: retry later."""

    status = 503
    type = "/problems/dependency-unavailable"
    title = "Service Unavailable"
    retry_after_seconds: ClassVar[int] = 2

    def __init__(self, dependency: str, detail: str | None = None) -> None:
        super().__init__(
            detail or f"{dependency} is unavailable; retry later", dependency=dependency
        )
        self.dependency = dependency
        self.headers["Retry-After"] = str(self.retry_after_seconds)


class DeadlineExceeded(DependencyUnavailable):
    """The request's deadline passed while it waited (keel.middleware.deadline)."""

    type = "/problems/deadline-exceeded"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            "request", detail=f"The request did not complete within {seconds:g} s; retry later."
        )


class UpstreamTimeout(AppError):
    """The request's deadline passed while it waited on an upstream HTTP service."""

    status = 504
    type = "/problems/upstream-timeout"
    title = "Gateway Timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"An upstream service did not answer within the request's {seconds:g} s; retry later."
        )
        self.headers["Retry-After"] = str(DependencyUnavailable.retry_after_seconds)
