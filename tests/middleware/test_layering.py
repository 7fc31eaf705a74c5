"""Layers point one way, and each piece of the stack stands alone: the middleware (and the rate
limiter, middleware too) never imports `keel.api`, and removing any one entry of
`middleware_stack` leaves an app that still answers, refuses and fails as it should."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

import keel
from keel.api.problems import install_problem_handlers
from keel.middleware import middleware_stack
from keel.middleware.body_limit import BodyLimitMiddleware
from keel.middleware.composed import as_layers
from keel.observability.metrics import Metrics
from keel.settings import Settings

SOURCE = Path(keel.__file__).parent
LOWER_LAYERS = (
    "middleware",
    "ratelimit",  # feature: ratelimit
    "problems.py",
)
ORIGIN = "https://app.example"


def imported_modules(source: str, package: str) -> set[str]:
    """Every module a module of `package` imports, at any depth (in functions and
    TYPE_CHECKING blocks too); for `from m import n`, both `m` and `m.n`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _package_of(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1])


def _api_imports(path: Path) -> set[str]:
    modules = imported_modules(path.read_text(), _package_of(path))
    return {module for module in modules if module == "keel.api" or module.startswith("keel.api.")}


def _lower_layer_files() -> list[Path]:
    files: list[Path] = []
    for name in LOWER_LAYERS:
        path = SOURCE / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


@pytest.mark.parametrize(
    "source",
    [
        "import keel.api.problems",
        "from keel.api import problems",
        "from keel import api",
        "def late():\n    from ..api.v1 import openapi",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..api import deps",
    ],
)
def test_the_walk_finds_every_form_of_import(source: str) -> None:
    modules = imported_modules(source, "keel.middleware")
    assert any(module.startswith("keel.api") for module in modules), modules


def test_the_lower_layers_do_not_import_keel_api() -> None:
    files = _lower_layer_files()
    assert SOURCE / "middleware" / "body_limit.py" in files
    offending = sorted(
        (str(path.relative_to(SOURCE)), module) for path in files for module in _api_imports(path)
    )
    assert offending == []


def _app() -> FastAPI:
    """An app with the problem handlers and three routes, no middleware yet."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    install_problem_handlers(app)

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/boom")
    async def boom() -> dict[str, bool]:
        raise RuntimeError("boom")

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    return app


def _is(entry: object, layer: type) -> bool:
    if not isinstance(entry, Middleware):
        return False
    cls: object = entry.cls
    return cls is layer


SETTINGS = Settings(_env_file=None, cors_origins=[ORIGIN], max_body_size=100)
STACK_SIZE = len(
    middleware_stack(
        _app(),
        SETTINGS,
        metrics=Metrics(),
        tracing=False,  # feature: tracing
    )
)


@pytest.mark.parametrize("index", range(STACK_SIZE))
async def test_the_app_still_works_without_any_one_entry(index: int) -> None:
    app = _app()
    stack = middleware_stack(
        app,
        SETTINGS,
        metrics=Metrics(),
        tracing=False,  # feature: tracing
    )
    removed = stack.pop(index)
    assert removed is not None
    for layer in reversed(as_layers(stack)):
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/ok")).json() == {"ok": True}
        assert (await client.post("/echo", content=b"x" * 100)).json() == {"size": 100}
        failed = await client.get("/boom")
        assert failed.status_code == 500
        assert failed.headers["content-type"] == "application/problem+json"
        too_big = await client.post("/echo", content=b"x" * 101)
        assert too_big.status_code == (200 if _is(removed, BodyLimitMiddleware) else 413)
        preflight = await client.options(
            "/echo", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == (405 if _is(removed, CORSMiddleware) else 200)
