"""Every status an /api/v1 operation can return is in its OpenAPI `responses`."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

PROBLEM = "application/problem+json"


@pytest.fixture
def schema(app: FastAPI) -> dict[str, Any]:
    document: dict[str, Any] = app.openapi()
    return document


def v1_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
    ]


def test_errors_are_documented_as_problem_documents(schema: dict[str, Any]) -> None:
    operations = v1_operations(schema)
    assert len(operations) >= 13
    for method, path, operation in operations:
        responses = operation["responses"]
        where = f"{method} {path}"
        assert "503" in responses, where
        if operation.get("security"):
            assert "401" in responses, where
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in responses, where
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert "400" in responses, where  # malformed JSON
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert list(response["content"]) == [PROBLEM], (where, status)
                assert response["content"][PROBLEM]["schema"]["title"] == "Problem"


def test_specific_statuses(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    item = paths["/api/v1/items/{item_id}"]
    assert {"200", "304", "401", "404"} <= item["get"]["responses"].keys()
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    assert {"412", "404"} <= item["patch"]["responses"].keys()
    assert {"412", "404"} <= item["delete"]["responses"].keys()
    assert "403" in paths["/api/v1/admin/users"]["get"]["responses"]
    assert "409" in paths["/api/v1/auth/register"]["post"]["responses"]


def test_login_is_an_oauth2_password_flow(schema: dict[str, Any]) -> None:
    login = schema["paths"]["/api/v1/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in login["requestBody"]["content"]
    schemes = schema["components"]["securitySchemes"]
    flows = [scheme["flows"] for scheme in schemes.values() if scheme["type"] == "oauth2"]
    assert flows == [{"password": {"scopes": {}, "tokenUrl": "/api/v1/auth/token"}}]
    protected = schema["paths"]["/api/v1/items"]["get"]
    assert protected["security"]
    assert not schema["paths"]["/api/v1/auth/register"]["post"].get("security")
