"""keel_dev's scaffold without running it whole: names in every spelling, names it must refuse,
registration that survives formatting (tests/test_new_domain.py runs it whole)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.db.migrations import project_root
from keel_dev.rename import DomainName, rename_source
from keel_dev.scaffold import MIGRATIONS_ENV, ROUTERS, check_name, copies, register

ROOT = project_root()


@pytest.mark.parametrize(
    ("name", "singular", "plural"),
    [
        ("projects", "project", "projects"),
        ("purchase-orders", "purchase_order", "purchase_orders"),
        ("Line_Items", "line_item", "line_items"),
        ("categories", "category", "categories"),
        ("statuses", "status", "statuses"),
        ("boxes", "box", "boxes"),
        ("watches", "watch", "watches"),
        ("caches", "cache", "caches"),
    ],
)
def test_names(name: str, singular: str, plural: str) -> None:
    assert DomainName.parse(name).identifiers == (singular, plural)


def test_every_spelling() -> None:
    source = (
        '"""An item\'s rules."""\n'
        'ITEMS = "/api/v1/items"\n'
        "class ItemRead: ...\n"
        "def get_item(item_id):\n"
        '    return page["items"], row.items(), "item.created", "Create an item"\n'
    )
    assert rename_source(source, DomainName.parse("purchase-orders")) == (
        '"""A purchase order\'s rules."""\n'
        'PURCHASE_ORDERS = "/api/v1/purchase-orders"\n'
        "class PurchaseOrderRead: ...\n"
        "def get_purchase_order(purchase_order_id):\n"
        '    return page["items"], row.items(), "purchase_order.created", '
        '"Create a purchase order"\n'
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("classes", "already uses"),  # `class`: a keyword
        ("responses", "already uses"),  # `response`: the routers' parameter
        # `events`: the kit module the service imports (or a module of that name exists)
        ("events", "already uses|exists already"),
        ("lists", "already uses"),  # `list`: a builtin
        ("resources", "exists already"),  # keel/resources.py
        ("items", "exists already"),
    ],
)
def test_names_that_cannot_be_used(name: str, reason: str) -> None:
    domain = DomainName.parse(name)
    with pytest.raises(SystemExit, match=reason):
        check_name(ROOT, domain, copies(ROOT, domain))


def test_a_free_name_passes() -> None:
    domain = DomainName.parse("projects")
    check_name(ROOT, domain, copies(ROOT, domain))


def test_registration_after_the_imports_are_wrapped(tmp_path: Path) -> None:
    (tmp_path / ROUTERS).parent.mkdir(parents=True)
    (tmp_path / ROUTERS).write_text(
        "from fastapi import APIRouter\n\n"
        "from keel.api.v1 import (\n    auth,\n    items,\n)\n\n"
        'router = APIRouter(prefix="/api/v1")\nrouter.include_router(items.router)\n'
        "router.include_router(auth.router)\n"
    )
    (tmp_path / MIGRATIONS_ENV).parent.mkdir(parents=True)
    (tmp_path / MIGRATIONS_ENV).write_text(
        "from keel.db.schema import metadata\n"
        "from keel.items import table as _items  # noqa\n"
        "from keel.settings import get_settings\n"
    )
    register(tmp_path, DomainName.parse("projects"))
    assert (
        (tmp_path / ROUTERS)
        .read_text()
        .endswith(
            "    items,\n)\nfrom keel.api.v1 import projects\n\n"
            'router = APIRouter(prefix="/api/v1")\nrouter.include_router(items.router)\n'
            "router.include_router(auth.router)\nrouter.include_router(projects.router)\n"
        )
    )
    assert (
        "_items  # noqa\nfrom keel.projects import table as _projects"
        in (tmp_path / MIGRATIONS_ENV).read_text()
    )
