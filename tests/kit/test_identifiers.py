"""Identifier quoting without SQLAlchemy: the keyword list is PostgreSQL's own, and the API
process never imports SQLAlchemy (it costs every worker start ~0.3 s and its memory)."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import pytest

from keel.kit.identifiers import KEYWORDS, quote_identifier


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("title", "title"),
        ("owner_id", "owner_id"),
        ("order", '"order"'),
        ("user", '"user"'),
        ("values", '"values"'),
        ("userId", '"userId"'),
        ("2fa", '"2fa"'),
        ('odd"name', '"odd""name"'),
    ],
)
def test_quotes_keywords_and_names_that_are_not_plain(name: str, quoted: str) -> None:
    assert quote_identifier(name) == quoted


async def test_keywords_are_those_the_server_refuses_as_bare_column_names(
    database_url: str,
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T', 'C')"
        )
    finally:
        await connection.close()
    assert {row["word"] for row in rows} <= KEYWORDS


def test_the_api_imports_no_sqlalchemy() -> None:
    code = "import sys, keel.main; print(sorted(m for m in sys.modules if 'sqlalchemy' in m))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
