from __future__ import annotations

import gzip
import re

import httpx
import pytest

from keel.middleware.cache import CacheHeaders, cache_policy
from keel.middleware.security import API_CSP, SecurityHeaders, docs_csp
from keel.settings import Settings
from tests.middleware.asgi import call, composed, http_scope, responder
from tests.middleware.conftest import Edge

MIB = 1024 * 1024
VARY = "Authorization, Accept-Encoding"


async def test_security_headers_on_api_responses_and_errors(edge: Edge) -> None:
    for response in (
        await edge.client.get("/livez"),
        await edge.client.get("/nope"),
        await edge.client.get("/t/boom"),
        await edge.client.post("/t/stream", content=b"x" * (MIB + 1)),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in response.headers


def _sources(csp: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}


async def test_the_docs_pages_load_only_from_the_app_and_run_no_inline_script(edge: Edge) -> None:
    """The pages' own tags; tests/api/test_docs_browser.py proves it in Chromium."""
    csp = _sources(docs_csp())
    assert csp["script-src"] == ["'self'"]
    for directive, sources in csp.items():
        assert not any(source.startswith(("http:", "https:")) for source in sources), directive
    for path in ("/docs", "/redoc"):
        response = await edge.client.get(path)
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == docs_csp()
        html = response.text
        assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
        assert assets, path
        for url in assets:
            assert url.startswith("/"), url
            asset = await edge.client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-security-policy"] == API_CSP
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    api = await edge.client.get("/openapi.json")
    assert api.headers["content-security-policy"] == API_CSP


async def test_the_docs_pages_keep_the_root_path_of_a_proxy(edge: Edge) -> None:
    """Behind a proxy that strips /api (uvicorn --root-path /api), every URL keeps it."""
    transport = edge.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    transport.root_path = "/api"
    try:
        response = await edge.client.get("/api/docs")
    finally:
        transport.root_path = ""
    assert response.status_code == 200
    assert 'src="/api/docs/swagger/swagger-ui-bundle.js"' in response.text
    assert 'data-openapi-url="/api/openapi.json"' in response.text


class TestHsts:
    @pytest.fixture
    def edge_settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"hsts_enabled": True, "hsts_max_age": 600})

    async def test_hsts_when_enabled(self, edge: Edge) -> None:
        response = await edge.client.get("/livez")
        assert response.headers["strict-transport-security"] == "max-age=600; includeSubDomains"


async def test_unit_a_response_keeps_its_own_csp() -> None:
    inner = responder(
        headers=[(b"content-type", b"text/html"), (b"content-security-policy", b"custom")]
    )
    reply = await call(composed(inner, SecurityHeaders()), http_scope())
    assert reply.headers("content-security-policy") == ["custom"]
    assert reply.header("x-content-type-options") == "nosniff"


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("GET", "/t/items/1", {}, "no-cache"),
        ("GET", "/t/items/1", {"Authorization": "Bearer x"}, "private, no-cache"),
        ("GET", "/t/items/1", {"Cookie": "a=b"}, "private, no-cache"),
        ("GET", "/t/public", {}, "public, max-age=60, s-maxage=300"),
        ("GET", "/t/own-cache-control", {}, "max-age=5"),
        ("GET", "/nope", {}, "no-store"),
        ("GET", "/t/boom", {}, "no-store"),
    ],
)
async def test_cache_control_policy(
    edge: Edge, method: str, path: str, headers: dict[str, str], expected: str
) -> None:
    response = await edge.client.request(method, path, headers=headers)
    assert response.headers["cache-control"] == expected


async def test_mutations_are_no_store_and_have_no_vary(edge: Edge) -> None:
    response = await edge.client.post("/t/echo", json={"id": 1, "name": "a"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert "vary" not in response.headers


async def test_vary_on_storable_reads(edge: Edge) -> None:
    public = await edge.client.get("/t/public")
    assert public.headers["vary"] == "Authorization, Accept-Encoding"
    private = await edge.client.get("/t/items/1", headers={"Authorization": "Bearer x"})
    assert private.headers["vary"] == "Authorization, Accept-Encoding"


async def test_gzip_above_the_threshold_with_one_merged_vary(edge: Edge) -> None:
    large = await edge.client.get("/t/large", headers={"Accept-Encoding": "gzip"})
    assert large.headers["content-encoding"] == "gzip"
    assert len(large.json()) == 200  # httpx decodes it
    assert large.headers.get_list("vary") == ["Accept-Encoding, Authorization"]
    small = await edge.client.get("/t/items/1", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    plain = await edge.client.get("/t/large", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


async def test_unit_gzip_body_is_really_compressed(edge: Edge) -> None:
    transport = edge.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    request = httpx.Request("GET", "http://testserver/t/large", headers={"Accept-Encoding": "gzip"})
    response = await transport.handle_async_request(request)
    raw = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
    assert gzip.decompress(raw).startswith(b"[{")
    assert len(raw) < len(gzip.decompress(raw)) / 5


async def test_unit_vary_merges_with_an_existing_one() -> None:
    inner = responder(headers=[(b"content-type", b"application/json"), (b"vary", b"Origin")])
    reply = await call(composed(inner, CacheHeaders()), http_scope())
    assert reply.headers("vary") == ["Origin, Authorization, Accept-Encoding"]


def _declaring(policy: str) -> object:
    """A matched route as the router leaves it in the scope, with a declared cache policy."""
    from types import SimpleNamespace

    return SimpleNamespace(openapi_extra=cache_policy(policy))


@pytest.mark.parametrize(
    ("method", "status", "headers", "route", "expected"),
    [
        ("GET", 200, [], None, ("no-cache", "Authorization, Accept-Encoding")),
        ("HEAD", 200, [("Cookie", "a=b")], None, ("private, no-cache", VARY)),
        ("GET", 200, [("Authorization", "Bearer x")], None, ("private, no-cache", VARY)),
        ("GET", 200, [], _declaring("public, max-age=60"), ("public, max-age=60", VARY)),
        ("GET", 200, [], _declaring("no-store, max-age=0"), ("no-store, max-age=0", None)),
        ("GET", 404, [("Authorization", "Bearer x")], None, ("no-store", None)),
        ("POST", 201, [], None, ("no-store", None)),
        ("DELETE", 204, [], _declaring("public, max-age=60"), ("no-store", None)),
    ],
)
async def test_unit_cache_policy(
    method: str,
    status: int,
    headers: list[tuple[str, str]],
    route: object,
    expected: tuple[str, str | None],
) -> None:
    scope = http_scope(method, headers=headers, route=route)
    reply = await call(composed(responder(status=status), CacheHeaders()), scope)
    assert (reply.header("cache-control"), reply.header("vary")) == expected
    assert len(reply.headers("cache-control")) == 1


async def test_unit_a_response_keeps_its_own_cache_control_and_gets_vary() -> None:
    inner = responder(headers=[(b"cache-control", b"max-age=5")])
    reply = await call(composed(inner, CacheHeaders()), http_scope())
    assert reply.headers("cache-control") == ["max-age=5"]
    assert reply.headers("vary") == [VARY]
