"""Every status an /api/v1 operation can return is in its OpenAPI `responses`."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import AnyHttpUrl

from keel.main import create_app
from keel.settings import Settings

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
    headers = {p["name"] for p in item["get"]["parameters"] if p["in"] == "header"}
    assert headers == {"if-none-match", "if-modified-since"}
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


def required_statuses(method: str, path: str, operation: dict[str, Any]) -> set[str]:
    """What the service's error handlers and middleware can answer for this operation."""
    statuses = {"503", "429"}  # every route has a dependency; every /api/v1 route a limit
    parameters = operation.get("parameters", [])
    body = operation.get("requestBody", {}).get("content", {})
    if operation.get("security"):
        statuses.add("401")  # missing, invalid, expired or revoked token
    if path.startswith("/api/v1/admin/"):
        statuses.add("403")  # AdminUser
    if parameters or body:
        statuses.add("422")  # request validation
    if body:
        statuses.add("413")  # body limit, before authentication
    if "application/json" in body:
        statuses.add("400")  # malformed JSON
    if any(p["name"] == "cursor" for p in parameters):
        statuses.add("400")  # a cursor that was not signed by us
    if any(p["in"] == "path" for p in parameters):
        statuses.add("404")  # not found, or not visible to the caller
    if any(p["in"] == "header" and p["name"].lower() == "if-match" for p in parameters):
        statuses.add("412")
    return statuses


def test_every_status_the_error_handlers_can_produce_is_documented(
    schema: dict[str, Any],
) -> None:
    missing = {
        f"{method} {path}": sorted(required_statuses(method, path, operation) - set(responses))
        for method, path, operation in v1_operations(schema)
        if (responses := operation["responses"])
    }
    assert not {where: codes for where, codes in missing.items() if codes}
    # Conflicts come from the services' rules, not from the request's shape: named here.
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/users/me", "patch"),
        ("/api/v1/admin/users/{user_id}/deactivate", "post"),
        ("/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver", "post"),
    ]:
        assert "409" in paths[path][method]["responses"], (method, path)


def test_every_operation_is_described_for_generated_clients(schema: dict[str, Any]) -> None:
    operation_ids = []
    for method, path, operation in v1_operations(schema):
        where = f"{method} {path}"
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        assert operation.get("operationId"), where
        assert operation["operationId"].isidentifier(), where  # set by hand, not generated
        operation_ids.append(operation["operationId"])
        body = operation.get("requestBody", {}).get("content", {})
        for media in body.values():
            assert _examples(schema, media), f"{where}: request body example"
        for status, response in operation["responses"].items():
            for media in response.get("content", {}).values():
                assert _examples(schema, media), f"{where} {status}: example"
    assert len(operation_ids) == len(set(operation_ids))


def _examples(schema: dict[str, Any], media: dict[str, Any]) -> bool:
    """The media type, or the schema it names, carries an example (a page: its items do)."""
    if "example" in media or "examples" in media:
        return True
    node = media["schema"]
    if "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    if "examples" in node:
        return True
    items = node.get("properties", {}).get("items", {})
    if node.get("title", "").startswith("Page[") and "$ref" in items.get("items", {}):
        return _examples(schema, {"schema": items["items"]})
    return False


def test_bearer_security_and_servers(settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "openapi_servers": [
                AnyHttpUrl("https://api.example.com"),
                AnyHttpUrl("https://staging.example.com/"),
            ]
        }
    )
    document = create_app(configured).openapi()
    assert document["servers"] == [
        {"url": "https://api.example.com"},
        {"url": "https://staging.example.com"},
    ]
    assert "servers" not in create_app(settings).openapi()
    (scheme,) = document["components"]["securitySchemes"].values()
    assert scheme["type"] == "oauth2"  # sends `Authorization: Bearer <access token>`
    for method, path, operation in v1_operations(document):
        public = path.startswith("/api/v1/auth/") and not path.endswith("/logout")
        assert bool(operation.get("security")) != public, f"{method} {path}"
