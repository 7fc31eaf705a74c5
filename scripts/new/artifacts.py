"""Generated files a feature has entries in: the Grafana dashboard and the OpenAPI snapshot.

Neither can carry comment markers (JSON), so a disabled feature's entries are found by what
they name (its metric prefixes, its API paths: scripts.new.features).
"""

from __future__ import annotations

import json
import re
from typing import Any

from scripts.new.features import FEATURES

OPENAPI_SNAPSHOT = "tests/api/v1/openapi.snapshot.json"
# How keel.ratelimit describes its 429 (too_many_requests_response) and names its headers.
RATE_LIMIT_DESCRIPTION = "Rate limit exceeded; retry after Retry-After seconds"
RATE_LIMIT_HEADERS = "RateLimit-"  # a prefix
_REF = re.compile(r'"\$ref": "#/components/schemas/([^"]+)"')


def without_panels(dashboard: str, enabled: frozenset[str]) -> str:
    """A Grafana dashboard without the panels that query a disabled feature's metrics."""
    gone = tuple(
        prefix for feature in FEATURES if feature.name not in enabled for prefix in feature.metrics
    )
    if not gone:
        return dashboard
    data = json.loads(dashboard)
    data["panels"] = [
        panel
        for panel in data["panels"]
        if not any(
            prefix in target.get("expr", "")
            for target in panel.get("targets", [])
            for prefix in gone
        )
    ]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def without_operations(snapshot: str, enabled: frozenset[str]) -> str:
    """The OpenAPI snapshot without a disabled feature's paths, and without the schemas that
    only those paths used (the snapshot test asks that every schema in it still exists).
    Without the rate limiter, its 429s leave too (keel.ratelimit documents them)."""
    gone = tuple(
        prefix
        for feature in FEATURES
        if feature.name not in enabled
        for prefix in feature.api_paths
    )
    if not gone and "ratelimit" in enabled:
        return snapshot
    data = json.loads(snapshot)
    data["paths"] = {path: ops for path, ops in data["paths"].items() if not path.startswith(gone)}
    if "ratelimit" not in enabled:
        for operations in data["paths"].values():
            for operation in operations.values():
                _drop_rate_limit_answers(operation.get("responses", {}))
    schemas = data["components"]["schemas"]
    used = _referenced(json.dumps(data["paths"]), schemas)
    data["components"]["schemas"] = {name: schemas[name] for name in schemas if name in used}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _drop_rate_limit_answers(responses: dict[str, Any]) -> None:
    """The limiter's own 429, or its RateLimit-* headers on a route's own 429 (the login's)."""
    declared = responses.get("429")
    if declared is None:
        return
    if declared["description"] == RATE_LIMIT_DESCRIPTION:
        del responses["429"]
        return
    headers = declared.get("headers", {})
    declared["headers"] = {
        name: header for name, header in headers.items() if not name.startswith(RATE_LIMIT_HEADERS)
    }


def _referenced(text: str, schemas: dict[str, object]) -> set[str]:
    """The schema names `text` refers to, and those they refer to, transitively."""
    found: set[str] = set()
    pending = set(_REF.findall(text))
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending |= set(_REF.findall(json.dumps(schemas.get(name, {}))))
    return found
