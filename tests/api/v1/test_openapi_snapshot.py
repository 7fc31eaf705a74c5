"""The published API does not change by accident: every operation and schema of the committed
snapshot (`openapi.snapshot.json`) is still in the document, exactly.

What a new domain adds passes: its operations and schemas, and its values in an enum (such as
the event types it registers, where the API lists them). An operation or schema that changed
fails. When a change is intended, regenerate the snapshot and review its diff:

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


def kept(old: Any, new: Any, key: str = "") -> bool:
    """`new` is `old`, but for values added to an enum."""
    if key == "enum" and isinstance(old, list) and isinstance(new, list):
        return set(old) <= set(new)
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(kept(old[k], new[k], k) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(kept(a, b) for a, b in zip(old, new, strict=True))
    return bool(old == new)


def changed(snapshot: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """What of the snapshot is missing from the document or differs in it."""
    found = []
    for path, operations in snapshot["paths"].items():
        for method, operation in operations.items():
            if not kept(operation, document["paths"].get(path, {}).get(method)):
                found.append(f"{method.upper()} {path}")
    for section, entries in snapshot["components"].items():
        for name, entry in entries.items():
            if not kept(entry, document["components"].get(section, {}).get(name)):
                found.append(f"components/{section}/{name}")
    return found


def test_the_document_keeps_every_operation_of_the_snapshot(app: FastAPI) -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    assert changed(snapshot, app.openapi()) == []


def test_the_comparison_sees_a_changed_operation(app: FastAPI) -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    document = json.loads(json.dumps(app.openapi()))
    # feature: webhooks
    events = document["components"]["schemas"]["EndpointCreate"]["properties"]["events"]
    events["items"]["enum"].append("project.created")  # a new domain's event type: kept
    # end feature: webhooks
    assert changed(snapshot, document) == []
    document["paths"]["/api/v1/users/me"]["get"]["responses"].pop("401")
    document["components"]["schemas"]["UserRead"]["properties"].pop("email")
    assert changed(snapshot, document) == [
        "GET /api/v1/users/me",
        "components/schemas/UserRead",
    ]


if __name__ == "__main__":
    settings = Settings(_env_file=None, environment=Environment.TEST)
    document = create_app(settings).openapi()
    SNAPSHOT.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")  # stable diffs
    print(f"wrote {SNAPSHOT}")
