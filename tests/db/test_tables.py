"""What the request path reads agrees with what Alembic creates: every `keel.kit.table.Table`
of the code names a table of the schema, and each column its row model reads is a column there."""

from __future__ import annotations

import importlib
import pkgutil

import keel
from keel.db.schema import metadata
from keel.kit.table import Table


def tables_in_code() -> list[tuple[str, Table[object]]]:
    found = []
    for module in pkgutil.walk_packages(keel.__path__, "keel."):
        loaded = importlib.import_module(module.name)
        found += [
            (f"{module.name}.{name}", value)
            for name, value in vars(loaded).items()
            if isinstance(value, Table)
        ]
    return found


def test_every_table_of_the_code_matches_the_schema() -> None:
    tables = tables_in_code()
    names = {table.name for _, table in tables}
    assert "users" in names
    assert "items" in names  # feature: items
    assert {"webhook_endpoints", "webhook_deliveries"} <= names  # feature: webhooks
    mismatched = [
        f"{where}: {sorted(set(table.columns) - set(metadata.tables[table.name].c.keys()))}"
        if table.name in metadata.tables
        else f"{where}: no table {table.name!r} in the schema"
        for where, table in tables
        if table.name not in metadata.tables
        or not set(table.columns) <= set(metadata.tables[table.name].c.keys())
    ]
    assert mismatched == []
