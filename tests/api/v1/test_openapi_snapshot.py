"""The published API does not change by accident: every operation and schema of the committed
snapshot (`openapi.snapshot.json`) is still in the document, exactly.

Operations added since the snapshot (a new domain) pass; an operation or schema that changed
fails, with a diff. When a change is intended, regenerate the snapshot and review its diff:

    .venv/bin/python -m tests.api.v1.test_openapi_snapshot
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from keel.main import create_app
from keel.settings import Environment, Settings

SNAPSHOT = Path(__file__).with_name("openapi.snapshot.json")


def changed(snapshot: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """What of the snapshot is missing from the document or differs in it."""
    found = []
    for path, operations in snapshot["paths"].items():
        for method, operation in operations.items():
            if document["paths"].get(path, {}).get(method) != operation:
                found.append(f"{method.upper()} {path}")
    for section, entries in snapshot["components"].items():
        for name, entry in entries.items():
            if document["components"].get(section, {}).get(name) != entry:
                found.append(f"components/{section}/{name}")
    return found


def test_the_document_keeps_every_operation_of_the_snapshot(app: FastAPI) -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    assert changed(snapshot, app.openapi()) == []


def test_the_comparison_sees_a_changed_operation(app: FastAPI) -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    document = json.loads(json.dumps(app.openapi()))
    document["paths"]["/api/v1/items/{item_id}"]["get"]["responses"].pop("304")
    document["components"]["schemas"]["ItemRead"]["properties"].pop("version")
    assert changed(snapshot, document) == [
        "GET /api/v1/items/{item_id}",
        "components/schemas/ItemRead",
    ]


if __name__ == "__main__":
    settings = Settings(_env_file=None, environment=Environment.TEST)
    document = create_app(settings).openapi()
    SNAPSHOT.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")  # stable diffs
    print(f"wrote {SNAPSHOT}")
