"""`/api/v1/items`: the caller's items, with conditional requests and keyset pagination."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status

from keel.api.deps import AppSettings, AuthenticatedRead, CacheDep, CurrentUser, Db
from keel.api.v1.conditional import expected_versions, not_modified, validators
from keel.api.v1.openapi import links, problems
from keel.items import service as items_service
from keel.items.schemas import ItemCreate, ItemRead, ItemSort, ItemStats, ItemUpdate
from keel.pagination import Page

router = APIRouter(prefix="/items", tags=["items"])
# `{item_id:uuid}`: only a UUID routes to an item, so `/items/stats` is never read as an item id
# (PATCH /items/stats is a 405, not a 422 about "stats"; found by schemathesis). OpenAPI shows
# the path as `/items/{item_id}`.

_VALIDATOR_HEADERS: dict[str, Any] = {
    "ETag": {"schema": {"type": "string"}, "description": "Strong entity tag"},
    "Last-Modified": {"schema": {"type": "string"}},
}
IfMatch = Annotated[
    str | None,
    Header(description="ETag from a previous read; the write fails with 412 if it changed"),
]


# The two conditional-request headers are free-form optional strings, read from the request
# rather than declared as `Header()` parameters: FastAPI analyses and validates every declared
# parameter on every request, which was ~5% of this route's CPU (bench/run.py, py-spy). OpenAPI
# still documents them.
_CONDITIONAL_GET_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }
    for name, description in (
        ("If-None-Match", "ETags the client holds: 304 Not Modified when one is current"),
        ("If-Modified-Since", "HTTP date: 304 Not Modified when the item is not newer"),
    )
]


# Declared first: the app matches routes by a linear scan (~85 Python opcodes per route it
# passes), and reading one item is the hottest route. The order changes nothing else: only a
# UUID routes to an item (OpenAPI lists the operations in this order).
@router.get(
    "/{item_id:uuid}",
    operation_id="get_item",
    summary="Read an item",
    response_model=ItemRead,
    responses={
        200: {"headers": _VALIDATOR_HEADERS},
        304: {"description": "Not Modified: the client's copy (If-None-Match) is current"},
        **problems(401, 404, 422),
    },
    openapi_extra={"parameters": _CONDITIONAL_GET_PARAMETERS},
)
async def get_item(
    item_id: uuid.UUID, reader: AuthenticatedRead, request: Request, response: Response
) -> ItemRead | Response:
    item = await items_service.get_item(reader.db, reader.user, item_id)
    headers = validators(item)
    if not_modified(item, request.scope["headers"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    response_headers = response.headers  # FastAPI's fresh response: append, nothing to replace
    for name, value in headers.items():
        response_headers.append(name, value)
    return ItemRead.model_validate(item)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_item",
    summary="Create an item",
    responses={
        201: {
            "links": links(
                "item",
                "item_id",
                GetItem="get_item",
                UpdateItem="update_item",
                DeleteItem="delete_item",
            )
        },
        **problems(400, 413, 401, 422),
    },
)
async def create_item(
    body: ItemCreate,
    user: CurrentUser,
    db: Db,
    cache: CacheDep,
    request: Request,
    response: Response,
) -> ItemRead:
    item = await items_service.create_item(db, user, body, cache=cache)
    response.headers.update(validators(item))
    response.headers["Location"] = str(request.url_for("get_item", item_id=item.id))
    return ItemRead.model_validate(item)


@router.get(
    "", operation_id="list_items", summary="List my items", responses=problems(400, 401, 422)
)
async def list_items(
    reader: AuthenticatedRead,
    settings: AppSettings,
    limit: Annotated[int | None, Query(ge=1, description="Capped by PAGE_MAX_LIMIT")] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    sort: ItemSort = "-created_at",
    done: bool | None = None,
) -> Page[ItemRead]:
    """The caller's items. Pass `next_cursor` back as `cursor` with the same `sort`/`done`."""
    page = await items_service.list_items(
        reader.db, settings, reader.user, limit=limit, cursor=cursor, sort=sort, done=done
    )
    # One validation of the whole page in pydantic-core, not one Python call per item.
    return Page[ItemRead].model_validate(page, from_attributes=True)


@router.get("/stats", operation_id="item_stats", summary="Count my items", responses=problems(401))
async def item_stats(
    reader: AuthenticatedRead, cache: CacheDep, settings: AppSettings
) -> ItemStats:
    """Counts of the caller's items. Cached for CACHE_TTL_SECONDS, refreshed by every write."""
    return await items_service.item_stats(reader.db, cache, settings, reader.user)


@router.patch(
    "/{item_id:uuid}",
    operation_id="update_item",
    summary="Update an item",
    responses={200: {"headers": _VALIDATOR_HEADERS}, **problems(400, 413, 401, 404, 412, 422)},
)
async def update_item(
    item_id: uuid.UUID,
    body: ItemUpdate,
    user: CurrentUser,
    db: Db,
    cache: CacheDep,
    response: Response,
    if_match: IfMatch = None,
) -> ItemRead:
    item = await items_service.update_item(
        db, user, item_id, body, expected_versions(if_match, item_id), cache=cache
    )
    response.headers.update(validators(item))
    return ItemRead.model_validate(item)


@router.delete(
    "/{item_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_item",
    summary="Delete an item",
    responses=problems(401, 404, 412, 422),
)
async def delete_item(
    item_id: uuid.UUID, user: CurrentUser, db: Db, cache: CacheDep, if_match: IfMatch = None
) -> None:
    await items_service.delete_item(
        db, user, item_id, expected_versions(if_match, item_id), cache=cache
    )
