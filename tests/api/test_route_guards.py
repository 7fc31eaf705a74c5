"""Guards over every operation of every API surface, whatever routes a user adds.

A request without credentials to an operation that requires them is refused (401, in the
surface's error format) before any statement reaches PostgreSQL: authentication comes before
any transaction or read. Operations whose user is optional (`{}` among their security
requirements) are public and skipped.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
from fastapi import Depends, FastAPI

from keel.api import surfaces
from keel.api.deps import CurrentUser, ReadDb
from keel.problems import ErrorFormats
from tests.helpers.statements import StatementCounter

PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


def protected_operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    prefixes = tuple(f"{surface.prefix}/" for surface in surfaces.SURFACES)
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith(prefixes)
        for method, operation in item.items()
        if operation.get("security") and {} not in operation["security"]
    ]


def example_path(path: str) -> str:
    """Each path parameter filled with a value its route accepts: an id or a slug."""

    def value(match: re.Match[str]) -> str:
        return "0b9e2a52-5f1e-4bb4-9a47-7c1f3f0d2c11" if match[1].endswith("id") else "a-slug"

    return PARAMETER.sub(value, path)


async def refusals(
    client: httpx.AsyncClient, statements: StatementCounter, operations: list[tuple[str, str]]
) -> list[str]:
    """What is wrong with each operation's answer to a request without credentials."""
    formats = ErrorFormats({surface.prefix: surface.errors for surface in surfaces.SURFACES})
    found = []
    for method, path in operations:
        await asyncio.sleep(0)  # earlier statements reach the logger first
        statements.reset()
        response = await client.request(method, example_path(path))
        await asyncio.sleep(0)
        where = f"{method} {path}"
        if response.status_code != 401:
            found.append(f"{where}: {response.status_code}")
        elif response.headers["content-type"] != formats.for_path(path).media_type:
            found.append(f"{where}: {response.headers['content-type']}")
        if statements.statements or statements.transaction_control:
            found.append(f"{where}: sent {statements.statements} before refusing")
    return found


async def test_no_credential_is_a_401_before_any_statement(
    app: FastAPI, client: httpx.AsyncClient, statements: StatementCounter
) -> None:
    operations = protected_operations(app.openapi())
    assert len(operations) >= 6
    assert len(operations) >= 10  # feature: items
    assert await refusals(client, statements, operations) == []


async def test_the_guard_catches_a_read_before_authentication(
    app: FastAPI, client: httpx.AsyncClient, statements: StatementCounter
) -> None:
    async def reads_first(db: ReadDb) -> None:
        await db.fetchval("SELECT 1")

    async def leaky(user: CurrentUser) -> dict[str, str]:
        return {}

    app.add_api_route(
        "/api/v1/test-leaky", leaky, methods=["GET"], dependencies=[Depends(reads_first)]
    )
    found = await refusals(client, statements, [("GET", "/api/v1/test-leaky")])
    assert any("sent" in line for line in found), found
