"""No text input reaches PostgreSQL with a NUL in it: `text` cannot hold U+0000, and asyncpg's
`CharacterNotInRepertoireError` was a 500 with a logged traceback (`username=a%00b@...`).

The rule is checked where it is published: the OpenAPI document is walked, and every string a
request can carry (path, query and cookie parameters, JSON and form bodies, nested schemas
included; not headers, where the HTTP parser refuses NUL first) must refuse NUL by its
declaration: a pattern that no NUL-holding probe
matches, an enum, or a format whose validator refuses it (`uuid`, `email`, `date-time`, `date`:
checked below). A new field declared as a bare `str` fails here until it gets `NO_NUL` or
`NOT_BLANK` (keel.kit.schemas).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Query
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, EmailStr, Field, TypeAdapter, ValidationError

from keel.kit.schemas import NO_NUL, NOT_BLANK
from keel.main import create_app
from keel.settings import Settings
from tests.auth.accounts import Account

# Formats whose validators refuse a NUL, with or without a pattern: the type each stands for
# here, and a valid value (proved below).
NUL_FREE_FORMATS: dict[str, tuple[Any, str]] = {
    "uuid": (uuid.UUID, "3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    "email": (EmailStr, "ada@example.com"),
    "date-time": (datetime, "2026-01-15T09:30:00Z"),
    "date": (date, "2026-01-15"),
}
# Hashed and compared, never sent to PostgreSQL as text: any character is allowed.
NOT_STORED = {
    ("UserCreate", "password"),
    ("PasswordChange", "current_password"),
    ("PasswordChange", "new_password"),
    ("PasswordForm", "password"),
}
# A pattern that refuses NUL matches none of these.
NUL_PROBES = ["\x00", "a\x00", "\x00a", "a\x00b", "password\x00", "ada\x00@example.com"]


def text_inputs(document: dict[str, Any]) -> Iterator[tuple[str, tuple[str, str] | None, Any]]:
    """(where, (component, property) or None, schema) of every string a request can carry."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header":
                    continue  # HTTP/1.1 parsers (h11, httptools) refuse a NUL in a header line
                place = f"{where} {parameter['in']} {parameter['name']}"
                yield from _strings(document, parameter["schema"], place, None)
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                yield from _strings(document, content["schema"], f"{where} {media}", None)


def _strings(
    document: dict[str, Any],
    schema: Any,
    where: str,
    owner: tuple[str, str] | None,
    component: str | None = None,
) -> Iterator[tuple[str, tuple[str, str] | None, Any]]:
    """`owner`: the (component, property) the schema is the value of, for NOT_STORED."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        resolved = document["components"]["schemas"][name]
        yield from _strings(document, resolved, f"{where} {name}", owner, name)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            yield from _strings(document, branch, where, owner)
    for prop, sub in schema.get("properties", {}).items():
        inner = (component, prop) if component is not None else owner
        yield from _strings(document, sub, f"{where}.{prop}", inner)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _strings(document, schema[key], where, owner)
    if schema.get("format") == "binary":
        return  # bytes (a file), never stored as PostgreSQL text
    if schema.get("type") == "string" or (not schema.keys() - {"title", "description"}):
        yield where, owner, schema  # a string, or a schema that takes anything


def refuses_nul(schema: dict[str, Any]) -> bool:
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return all(isinstance(value, str) and "\x00" not in value for value in values)
    if schema.get("format") in NUL_FREE_FORMATS:
        return True
    pattern = schema.get("pattern")
    return pattern is not None and not any(re.search(pattern, probe) for probe in NUL_PROBES)


def unguarded(document: dict[str, Any]) -> list[str]:
    return [
        where
        for where, owner, schema in text_inputs(document)
        if owner not in NOT_STORED and not refuses_nul(schema)
    ]


@pytest.fixture
def bare_app(settings: Settings) -> FastAPI:
    """The app as configured, not started: its routes and document are all these tests read."""
    return create_app(settings)


def test_every_text_input_of_the_api_refuses_nul(bare_app: FastAPI) -> None:
    document = bare_app.openapi()
    inputs = list(text_inputs(document))
    # The walk reaches bodies, forms, queries and paths (it is not vacuous).
    places = " ".join(where for where, _, _ in inputs)
    for expected in ("UserCreate.email", "PasswordForm.username", "query cursor"):
        assert expected in places
    assert "path job_id" in places  # feature: worker
    assert len(inputs) > 10
    assert len(inputs) > 25  # feature: items
    assert unguarded(document) == []
    # The walk sees the published document, so no route taking input may hide from it.
    routes = [context.original_route for context in iter_route_contexts(bare_app.routes)]
    hidden = [
        route.path
        for route in routes
        if isinstance(route, APIRoute)
        and not route.include_in_schema
        and (get_flat_params(route.dependant) or route.body_field is not None)
    ]
    assert hidden == []


class Note(BaseModel):
    """A body as a new domain might declare it: two text fields without the rule."""

    title: Annotated[str, Field(pattern=NOT_BLANK)]
    body: str
    tags: list[Annotated[str, Field(pattern=NO_NUL)]]
    aliases: list[str]


def test_the_walk_catches_a_new_field_without_the_rule() -> None:
    loose = FastAPI()

    @loose.post("/notes/{slug}")
    async def create(slug: str, note: Note, q: Annotated[str, Query(pattern=NO_NUL)]) -> None:
        return None

    found = unguarded(loose.openapi())
    assert found == [
        "POST /notes/{slug} path slug",
        "POST /notes/{slug} application/json Note.body",
        "POST /notes/{slug} application/json Note.aliases",
    ]


@pytest.mark.parametrize("pattern", ["^.*$", "^[a-z]", ".", "^\\S+$"])
def test_a_pattern_that_lets_nul_through_is_not_a_guard(pattern: str) -> None:
    assert not refuses_nul({"type": "string", "pattern": pattern})


@pytest.mark.parametrize("name", sorted(NUL_FREE_FORMATS))
def test_the_formats_trusted_above_refuse_nul(name: str) -> None:
    kind, sample = NUL_FREE_FORMATS[name]
    adapter: TypeAdapter[Any] = TypeAdapter(kind)
    adapter.validate_python(sample)
    middle = len(sample) // 2
    for value in (sample + "\x00", "\x00" + sample, sample[:middle] + "\x00" + sample[middle:]):
        with pytest.raises(ValidationError):
            adapter.validate_python(value)


async def test_nul_in_the_login_form_is_a_422_not_a_500(
    client: httpx.AsyncClient, account: Account
) -> None:
    for form in (
        {"username": "a\x00b@example.com", "password": "correct horse battery staple"},
        {"username": account.email, "password": account.password, "client_id": "c\x00"},
    ):
        response = await client.post("/api/v1/auth/token", data=form)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        field = next(name for name, value in form.items() if "\x00" in value)
        assert [error["loc"] for error in response.json()["errors"]] == [["body", field]]
    # The form is still OAuth2's: `grant_type` optional or "password", fields added ignored.
    logged_in = await client.post(
        "/api/v1/auth/token",
        data={
            "username": account.email,
            "password": account.password,
            "grant_type": "password",
            "scope": "",
            "extra": "ignored",
        },
    )
    assert logged_in.status_code == 200, logged_in.text
    assert logged_in.json()["token_type"] == "bearer"
    wrong_grant = await client.post(
        "/api/v1/auth/token",
        data={"username": account.email, "password": account.password, "grant_type": "code"},
    )
    assert wrong_grant.status_code == 422


async def test_nul_in_json_text_and_in_the_query_is_a_422(
    client: httpx.AsyncClient, account: Account
) -> None:
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": "a\x00b@example.com", "password": "correct horse battery staple"},
    )
    assert registered.status_code == 422, registered.text
    renamed = await client.patch(
        "/api/v1/users/me", json={"full_name": "Ada\x00"}, headers=account.headers
    )
    assert renamed.status_code == 422, renamed.text
    # feature: items
    listed = await client.get(
        "/api/v1/items", params={"cursor": "abc\x00def"}, headers=account.headers
    )
    assert listed.status_code == 422, listed.text
    # end feature: items
