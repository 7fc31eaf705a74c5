"""Every status an operation of any API surface can return is in its OpenAPI `responses`, in
that surface's error format.

The checks walk every operation under every surface of `keel.api.surfaces.SURFACES` (/api/v1
and any a user registers), and run once more on an app with a second surface
(tests/api/token_surface.py: another prefix, token header and error body), so they keep
guarding routes added later.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import AnyHttpUrl

from keel.api import surfaces
from keel.main import create_app
from keel.problems import ErrorFormats
from keel.settings import Settings
from tests.api import token_surface

PROBLEM = "application/problem+json"


@pytest.fixture(params=["surfaces", "with-a-token-surface"])
def schema(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The document of the app as registered, then with a second surface added."""
    if request.param == "with-a-token-surface":
        monkeypatch.setattr(surfaces, "SURFACES", (*surfaces.SURFACES, token_surface.surface))
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def surface_formats() -> ErrorFormats:
    """The error format of each surface the test's app serves (surfaces.SURFACES, as patched)."""
    return ErrorFormats({surface.prefix: surface.errors for surface in surfaces.SURFACES})


def api_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation under an API surface's prefix (not the probes)."""
    prefixes = tuple(f"{surface.prefix}/" for surface in surfaces.SURFACES)
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        if path.startswith(prefixes)
        for method, operation in item.items()
    ]


def v1_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [op for op in api_operations(schema) if op[1].startswith("/api/v1/")]


def test_errors_are_documented_in_their_surfaces_format(schema: dict[str, Any]) -> None:
    formats = surface_formats()
    operations = api_operations(schema)
    assert len(operations) >= 9
    assert len(operations) >= 13  # feature: items
    for method, path, operation in operations:
        error_format = formats.for_path(path)
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
                media = error_format.media_type
                assert list(response["content"]) == [media], (where, status)
                title = error_format.model.__name__
                assert response["content"][media]["schema"]["title"] == title, (where, status)


def test_specific_statuses(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    assert "403" in paths["/api/v1/admin/users"]["get"]["responses"]
    assert "409" in paths["/api/v1/auth/register"]["post"]["responses"]
    # feature: items
    item = paths["/api/v1/items/{item_id}"]
    assert {"200", "304", "401", "404"} <= item["get"]["responses"].keys()
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    headers = {p["name"] for p in item["get"]["parameters"] if p["in"] == "header"}
    assert headers == {"if-none-match", "if-modified-since"}
    assert {"412", "404"} <= item["patch"]["responses"].keys()
    assert {"412", "404"} <= item["delete"]["responses"].keys()
    # end feature: items


def test_login_is_an_oauth2_password_flow(schema: dict[str, Any]) -> None:
    """Among any number of security schemes, /api/v1's is OAuth2's password flow."""
    login = schema["paths"]["/api/v1/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in login["requestBody"]["content"]
    schemes = schema["components"]["securitySchemes"]
    flows = [scheme["flows"] for scheme in schemes.values() if scheme["type"] == "oauth2"]
    assert flows == [{"password": {"scopes": {}, "tokenUrl": "/api/v1/auth/token"}}]
    protected = schema["paths"]["/api/v1/users/me"]["get"]
    assert protected["security"]
    assert not schema["paths"]["/api/v1/auth/register"]["post"].get("security")


def required_statuses(method: str, path: str, operation: dict[str, Any]) -> set[str]:
    """What the service's error handlers and middleware can answer for this operation."""
    statuses = {"503"}  # every route has a dependency
    statuses.add("429")  # every /api/v1 route has a rate limit  # feature: ratelimit
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
        for method, path, operation in api_operations(schema)
        if (responses := operation["responses"])
    }
    assert not {where: codes for where, codes in missing.items() if codes}
    # Conflicts come from the services' rules, not from the request's shape: named here.
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/users/me", "patch"),
        ("/api/v1/admin/users/{user_id}/deactivate", "post"),
        # feature: webhooks
        ("/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver", "post"),
        # end feature: webhooks
    ]:
        assert "409" in paths[path][method]["responses"], (method, path)


def test_every_operation_is_described_for_generated_clients(settings: Settings) -> None:
    schema = create_app(settings).openapi()
    operation_ids = []
    for method, path, operation in api_operations(schema):
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
    paged = node.get("title", "").startswith(("Page[", "OffsetPage["))
    if paged and "$ref" in items.get("items", {}):
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
    schemes = document["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["type"] == "oauth2"  # `Authorization: Bearer <jwt>`
    for method, path, operation in v1_operations(document):
        public = path.startswith("/api/v1/auth/") and not path.endswith("/logout")
        assert bool(operation.get("security")) != public, f"{method} {path}"
