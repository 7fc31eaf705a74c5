"""Follow every OpenAPI link of the document, deterministically: no fixed seed has to reach it.

For each operation whose 2xx response declares `links` (a create), its documented request
example is sent; then each linked operation is called on the resource it made, reads first,
writes next, deletes last, each with its own documented example body. Any answer but a 2xx is a
failure. A create whose example the service refuses for a reason JSON Schema cannot state (say,
a URL that does not resolve in the tests) starts no walk; that is reported, not failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Headers = Callable[[str], dict[str, str]]  # the credential header for an operation's path
_ORDER = {"get": 0, "head": 0, "put": 1, "patch": 1, "post": 1, "delete": 2}


@dataclass
class LinkWalk:
    walked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def example_body(document: Mapping[str, Any], operation: Mapping[str, Any]) -> Any:
    media = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if media is None:
        return None
    if "example" in media:
        return media["example"]
    node = media["schema"]
    if "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return (node.get("examples") or [None])[0]


def walk_links(client: Any, document: Mapping[str, Any], headers: Headers) -> LinkWalk:
    operations = {
        operation["operationId"]: (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "operationId" in operation
    }
    walk = LinkWalk()
    for method, path, operation in operations.values():
        for status, response in operation.get("responses", {}).items():
            if status.startswith("2") and response.get("links"):
                source = (method, path, operation)
                _walk_one(client, document, operations, headers, source, response, walk)
    return walk


def _walk_one(
    client: Any,
    document: Mapping[str, Any],
    by_id: Mapping[str, tuple[str, str, Mapping[str, Any]]],
    headers: Headers,
    source: tuple[str, str, Mapping[str, Any]],
    response: Mapping[str, Any],
    walk: LinkWalk,
) -> None:
    method, path, operation = source
    created = client.request(
        method, path, json=example_body(document, operation), headers=headers(path)
    )
    where = f"{method.upper()} {path}"
    if created.status_code >= 300:
        walk.refused.append(f"{where}: {created.status_code} {created.text[:200]}")
        return
    links = sorted(
        response["links"].values(), key=lambda link: _ORDER[by_id[link["operationId"]][0]]
    )
    for link in links:
        target_method, target_path, target = by_id[link["operationId"]]
        values = {
            name: _resolve(created.json(), expression)
            for name, expression in link["parameters"].items()
        }
        url = target_path.format(**values)
        answer = client.request(
            target_method, url, json=example_body(document, target), headers=headers(target_path)
        )
        step = f"{where} -> {target_method.upper()} {target_path}"
        if answer.status_code >= 300:
            walk.failures.append(f"{step}: {answer.status_code} {answer.text[:300]}")
        else:
            walk.walked.append(step)


def _resolve(body: Any, expression: str) -> Any:
    """`$response.body#/id` (a JSON pointer into the created resource's body)."""
    prefix = "$response.body#"
    assert expression.startswith(prefix), expression
    for part in filter(None, expression[len(prefix) :].split("/")):
        body = body[int(part)] if isinstance(body, list) else body[part]
    return body
