"""A second API surface for tests: `/test-token`, `Authorization: Token <jwt>`, and errors as
`{"errors": {"<where>": ["<message>"]}}` in plain `application/json`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict

from keel.api.deps import TokenAuthentication
from keel.api.surface import ApiSurface
from keel.auth.schemes import TokenScheme
from keel.auth.service import Principal
from keel.errors import DependencyUnavailable
from keel.kit.routing import Slug
from keel.problems import ErrorDetails, ErrorFormat

PREFIX = "/test-token"


class ErrorBody(BaseModel):
    """The error body this surface's clients expect."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"errors": {"body": ["Not found."]}}]}
    )

    errors: dict[str, list[str]]


def render_error(error: ErrorDetails) -> dict[str, Any]:
    found = error.extensions.get("errors")
    if isinstance(found, list) and found:
        by_field: dict[str, list[str]] = {}
        for entry in found:
            by_field.setdefault(".".join(map(str, entry["loc"])), []).append(entry["msg"])
        return {"errors": by_field}
    return {"errors": {"body": [error.detail or error.title]}}


ERRORS = ErrorFormat("application/json", render_error, ErrorBody)
token_auth = TokenAuthentication(
    TokenScheme(prefix="Token"),
    APIKeyHeader(name="Authorization", scheme_name="TokenHeader", description="`Token <jwt>`"),
)
User = Annotated[Principal, Depends(token_auth.required)]
MaybeUser = Annotated[Principal | None, Depends(token_auth.optional)]

router = APIRouter(prefix="/things", tags=["things"])
surface = ApiSurface(prefix=PREFIX, router=router, auth=token_auth, errors=ERRORS)


class ThingIn(BaseModel):
    title: str


@router.get("/{slug:slug}", operation_id="read_thing", responses=surface.responses(401, 404, 422))
async def read_thing(slug: Slug, user: MaybeUser) -> dict[str, str | None]:
    return {"slug": slug, "viewer": str(user.user_id) if user else None}


@router.get("/feed", operation_id="thing_feed", responses=surface.responses(401))
async def thing_feed(user: User) -> dict[str, str]:
    return {"feed_of": str(user.user_id)}


@router.post("", operation_id="create_thing", responses=surface.responses(400, 401, 413, 422))
async def create_thing(body: ThingIn, user: User) -> dict[str, str]:
    return {"title": body.title}


@router.get("/broken/crash", operation_id="crash", responses=surface.responses(500))
async def crash(request: Request) -> dict[str, str]:
    raise RuntimeError("a bug")


@router.get("/broken/unavailable", operation_id="unavailable", responses=surface.responses())
async def unavailable() -> dict[str, str]:
    raise DependencyUnavailable("database")
