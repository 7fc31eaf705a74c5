"""Statements an endpoint sends, counted with asyncpg's query logger on the test's connection
(which the app's requests use); the savepoints that stand in for the request's transaction are
counted apart, as transaction control. The `statements` fixture (tests/conftest.py) installs one.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
# asyncpg's own type introspection, once per connection the first time it meets a type.
DRIVER_INTROSPECTION = (
    "WITH RECURSIVE TYPEINFO_TREE",
    "SELECT CURRENT_SETTING('JIT')",
    "SELECT SET_CONFIG('JIT'",
)


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.transaction_control: list[str] = []

    def __call__(self, record: asyncpg.connection.LoggedQuery) -> None:
        text = " ".join(record.query.split())
        if text.upper().startswith(TRANSACTION_CONTROL):
            self.transaction_control.append(text)
        elif not text.upper().startswith(DRIVER_INTROSPECTION):
            self.statements.append(text)

    def reset(self) -> None:
        self.statements.clear()
        self.transaction_control.clear()

    @property
    def count(self) -> int:
        return len(self.statements)


async def count_for(
    statements: StatementCounter, client: httpx.AsyncClient, method: str, url: str, **kw: object
) -> int:
    await asyncio.sleep(0)  # the previous request's statements reach the loggers first
    statements.reset()
    response = await client.request(method, url, **kw)  # type: ignore[arg-type]
    assert response.status_code < 400, response.text
    # asyncpg hands each logged query to the loggers with call_soon: let them run.
    await asyncio.sleep(0)
    return statements.count
