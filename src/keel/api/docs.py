"""`/docs` (Swagger UI) and `/redoc` (ReDoc), with every asset they load served by the app.

FastAPI's own pages load both from a public CDN (floating versions), plus Google Fonts and a
remote favicon, and start Swagger UI with an inline script: blank pages without internet or
behind strict egress, and a CSP that must trust third-party hosts. Here the pinned builds come
from the fastapi-standalone-docs package (upgraded with the lock files, never copied by hand),
and Keel's one script is a static file, so the pages hold under a 'self'-only CSP
(keel.middleware.security.docs_csp).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path

import fastapi_standalone_docs
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"

_VENDORED = Path(fastapi_standalone_docs.__file__).parent / "static"
_OWN = Path(__file__).parent / "docs_assets"

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="icon" href="{root}{docs}/fastapi/favicon.png">
<link rel="stylesheet" href="{root}{docs}/swagger/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{root}{docs}/swagger/swagger-ui-bundle.js"></script>
<script src="{root}{docs}/keel/swagger-init.js" data-openapi-url="{root}{openapi}"></script>
</body>
</html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - ReDoc</title>
<link rel="icon" href="{root}{docs}/fastapi/favicon.png">
</head>
<body>
<redoc spec-url="{root}{openapi}"></redoc>
<script src="{root}{redoc}/redoc.standalone.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Adds both pages and their assets. Called after the API's routers, so API requests are
    never matched against these routes first. Needs `app.openapi_url`."""
    assert app.openapi_url, "the docs pages render the OpenAPI document"
    assets = {
        f"{DOCS_URL}/swagger": (_VENDORED / "swagger", "docs_swagger_assets"),
        f"{DOCS_URL}/fastapi": (_VENDORED / "fastapi", "docs_favicon"),
        f"{DOCS_URL}/keel": (_OWN, "docs_keel_assets"),
        # This ReDoc build loads its logo from "<page path>/logo-mini.svg", so its files sit
        # under the page's own path.
        REDOC_URL: (_VENDORED / "redoc", "redoc_assets"),
    }
    for path, (directory, name) in assets.items():
        app.mount(path, StaticFiles(directory=directory), name=name)
    # FastAPI's names for its own pages: keel.middleware finds the pages (for their CSP) by them.
    app.add_route(DOCS_URL, _page(_SWAGGER_PAGE), name="swagger_ui_html", include_in_schema=False)
    app.add_route(REDOC_URL, _page(_REDOC_PAGE), name="redoc_html", include_in_schema=False)


def _page(template: str) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def page(request: Request) -> HTMLResponse:
        app = request.app
        # Behind a proxy that strips a prefix, every URL on the page needs it back.
        root = request.scope.get("root_path", "").rstrip("/")
        html = template.format(
            title=escape(app.title),
            root=escape(root),
            openapi=escape(app.openapi_url),
            docs=DOCS_URL,
            redoc=REDOC_URL,
        )
        return HTMLResponse(html)

    return page
