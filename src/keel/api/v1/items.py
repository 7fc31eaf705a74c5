"""`/api/v1/items`: the caller's items, with conditional requests and keyset pagination."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from keel.api.deps import CacheDep, CurrentUser, Db, PageQuery, ReadDb
from keel.api.v1.openapi import links, problems
from keel.items import service as items_service
from keel.items.schemas import ItemCreate, ItemRead, ItemSort, ItemStats, ItemUpdate
from keel.kit import conditional
from keel.kit.conditional import IfMatch, IfModifiedSince, IfNoneMatch
from keel.kit.pagination import Page

router = APIRouter(prefix="/items", tags=["items"])
# Item paths are `{item_id:uuid}`: only a UUID routes to an item, so `/items/stats` is
# never an item id, whatever the order of the routes. OpenAPI shows `/items/{item_id}`.
CREATED = links(
    "item", "item_id", GetItem="get_item", UpdateItem="update_item", DeleteItem="delete_item"
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_item",
    summary="Create an item",
    responses={201: CREATED, **problems(400, 413, 401, 422)},
)
async def create_item(
    body: ItemCreate,
    user: CurrentUser,
    db: Db,
    cache: CacheDep,
    request: Request,
    response: Response,
) -> ItemRead:
    item = await items_service.create_item(db, cache, user, body)
    conditional.set_validators(response, item)
    response.headers["Location"] = str(request.url_for("get_item", item_id=item.id))
    return item


@router.get(
    "", operation_id="list_items", summary="List my items", responses=problems(400, 401, 422)
)
async def list_items(
    user: CurrentUser,
    db: ReadDb,
    page: PageQuery,
    sort: ItemSort = "-created_at",
    done: bool | None = None,
) -> Page[ItemRead]:
    """The caller's items. Pass `next_cursor` back as `cursor` with the same `sort`/`done`."""
    items = await items_service.list_items(db, user, page, sort=sort, done=done)
    return Page[ItemRead].model_validate(items, from_attributes=True)


@router.get("/stats", operation_id="item_stats", summary="Count my items", responses=problems(401))
async def item_stats(user: CurrentUser, db: ReadDb, cache: CacheDep) -> ItemStats:
    """Counts of the caller's items. Cached for CACHE_TTL_SECONDS, refreshed by every write."""
    return await items_service.item_stats(db, cache, user)


@router.get(
    "/{item_id:uuid}",
    operation_id="get_item",
    summary="Read an item",
    responses={**conditional.READ_RESPONSES, **problems(401, 404, 422)},
)
async def get_item(
    item_id: uuid.UUID,
    user: CurrentUser,
    db: ReadDb,
    response: Response,
    if_none_match: IfNoneMatch = None,
    if_modified_since: IfModifiedSince = None,
) -> ItemRead:
    item = await items_service.get_item(db, user, item_id)
    conditional.answer_read(response, item, if_none_match, if_modified_since)
    return item


@router.patch(
    "/{item_id:uuid}",
    operation_id="update_item",
    summary="Update an item",
    responses={**conditional.WRITE_RESPONSES, **problems(400, 413, 401, 404, 412, 422)},
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
    versions = conditional.expected_versions(if_match, item_id)
    item = await items_service.update_item(db, cache, user, item_id, body, versions)
    conditional.set_validators(response, item)
    return item


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
    versions = conditional.expected_versions(if_match, item_id)
    await items_service.delete_item(db, cache, user, item_id, versions)
