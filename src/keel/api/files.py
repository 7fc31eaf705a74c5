"""Files over HTTP: an upload's body as a stream, a download as a streamed response.

`FileUpload` is a route's incoming file, from either request shape clients use:

* the raw body (`Content-Type` the file's type, `?filename=` its name), or
* `multipart/form-data` with the file in the field `file` (what an HTML form sends).

Neither is read into memory, nor spooled to disk as Starlette's form parser does: the route
gets the bytes as they arrive (keel.kit.uploads). Such a route reads its own body, so the body
limit layer leaves it to the route (`streams_body`), and its deadline is
FILE_TRANSFER_DEADLINE_SECONDS, not the 1.5 s of other requests.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from keel.api.deps import get_resources
from keel.kit.schemas import NO_NUL
from keel.kit.uploads import FilePart, content_disposition, multipart_file
from keel.middleware.deadline import extend_deadline
from keel.resources import Resources
from keel.storage import ObjectStore, ObjectTooLarge

# What multipart framing (boundaries, part headers, small fields) may add to the file's size.
MULTIPART_ALLOWANCE = 64 * 1024
NO_STORE = "private, no-store"

# The smallest file of an accepted type: the documents' example of a file's bytes.
EXAMPLE_FILE = "%PDF-1.7\n%%EOF\n"
BINARY = {"type": "string", "format": "binary"}

# The request body of a route taking `FileUpload`, for the OpenAPI document.
FILE_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file: the raw body, or multipart/form-data with the field `file`.",
        "content": {
            "application/octet-stream": {"schema": BINARY, "example": EXAMPLE_FILE},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": BINARY},
                    "required": ["file"],
                },
                "example": {"file": EXAMPLE_FILE},
            },
        },
    }
}
# The responses of a route answering with `stream_file`.
# Content-Type is the file's own (one of FILE_ALLOWED_TYPES).
ANY_FILE = {"*/*": {"schema": BINARY, "example": EXAMPLE_FILE}}
FILE_DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file, as an attachment (Content-Disposition)", "content": ANY_FILE},
    206: {"description": "The one range asked for (Range)", "content": ANY_FILE},
    304: {"description": "Not modified: If-None-Match names the file's ETag"},
}


def streams_body(endpoint: Any) -> Any:
    """Marks a route that reads its body as a stream: the body limit layer does not buffer it
    (keel.middleware.body_limit); the route enforces its own limit while reading."""
    endpoint.streams_body = True
    return endpoint


async def get_storage(request: Request) -> ObjectStore:
    resources: Resources = await get_resources(request)
    return resources.storage


Storage = Annotated[ObjectStore, Depends(get_storage)]


async def extend_to_transfer_deadline(request: Request) -> None:
    resources = await get_resources(request)
    extend_deadline(request.scope, resources.settings.file_transfer_deadline_seconds)


TransferDeadline = Depends(extend_to_transfer_deadline)


async def get_file_upload(
    request: Request,
    filename: Annotated[
        str | None,
        Query(max_length=1024, pattern=NO_NUL, description="The file's name (raw body only)"),
    ] = None,
) -> FilePart:
    resources = await get_resources(request)
    settings = resources.settings
    extend_deadline(request.scope, settings.file_transfer_deadline_seconds)
    content_type = request.headers.get("content-type")
    multipart = (content_type or "").lower().startswith("multipart/form-data")
    _refuse_declared_length(request, settings.file_max_size, multipart)
    if multipart:
        assert content_type is not None
        return await multipart_file(request.stream(), content_type)
    return FilePart(filename=filename, content_type=content_type, chunks=request.stream())


FileUpload = Annotated[FilePart, Depends(get_file_upload)]


def _refuse_declared_length(request: Request, limit: int, multipart: bool) -> None:
    """413 before reading a byte when Content-Length already says the file is too large."""
    declared = request.headers.get("content-length", "")
    allowance = MULTIPART_ALLOWANCE if multipart else 0
    if declared.isdigit() and int(declared) > limit + allowance:
        raise ObjectTooLarge(limit)


async def stream_file(
    request: Request,
    storage: ObjectStore,
    *,
    key: str,
    size: int,
    etag: str,
    filename: str,
    content_type: str,
) -> Response:
    """The file as a download: 304 when the client has it (If-None-Match), 206 for one range
    (Range, honoured only while If-Range still matches), else 200; always Content-Length,
    ETag and no-store, and never more than one chunk of it in memory."""
    headers = {"ETag": etag, "Cache-Control": NO_STORE, "Accept-Ranges": "bytes"}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    byte_range = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        byte_range = None
    stream = await storage.open(key, byte_range, size=size)
    headers["Content-Length"] = str(stream.content_length)
    headers["Content-Disposition"] = content_disposition(filename)
    if stream.content_range is not None:
        headers["Content-Range"] = stream.content_range
    return StreamingResponse(
        stream.chunks, status_code=stream.status, media_type=content_type, headers=headers
    )


def _matches(header: str | None, etag: str) -> bool:
    """If-None-Match names this ETag (weakly compared, RFC 9110 13.1.2), or is `*`."""
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in tags or "*" in tags
