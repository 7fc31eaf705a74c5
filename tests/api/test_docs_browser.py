"""/docs and /redoc in a real browser, offline: Debian's Chromium (never a downloaded browser),
driven by Playwright against the real app under uvicorn on 127.0.0.1.

Every request the pages make is recorded and must go to the app; any other is aborted, as it
would fail on a machine without internet. Console errors, uncaught page errors and CSP
violations fail the test.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Locator, Page, Route, expect, sync_playwright

from keel.settings import Settings
from tests.helpers.served import served_app

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Reported through the console, where the test collects it, whichever directive was violated.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
});
"""
TIMEOUT_MS = 30_000


def _install_chromium() -> str | None:
    """Debian's chromium package, as scripts/deploy_check.sh installs its tools; the reason
    it could not be installed otherwise."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing; install Debian's chromium package (apt-get, as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"
    return None


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Under pytest-xdist every worker may get here: one installs, the others wait for it.
    lock = tmp_path_factory.getbasetemp().parent / "chromium-install.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        problem = None if Path(CHROMIUM).exists() else _install_chromium()
    if problem is not None:
        # CI must run this test: there a missing browser is a failure, never a skip.
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return CHROMIUM


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The real app (keel.main.create_app, docs on outside production) under uvicorn, on the
    test's PostgreSQL and Redis. Yields its base URL."""
    with served_app(settings, tmp_path / "uvicorn.log") as server:
        yield server.base


@dataclass
class Watched:
    """What a page did: every URL it requested, every console error and page error."""

    base: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def assert_offline_and_clean(self) -> None:
        assert self.requests, "the page made no request"
        outside = [url for url in self.requests if not url.startswith(f"{self.base}/")]
        assert outside == [], "requests that left the app"
        assert self.errors == [], "console errors or CSP violations"


@pytest.fixture
def page(chromium: str, served: str) -> Iterator[tuple[Page, Watched]]:
    watched = Watched(served)

    def only_the_app(route: Route) -> None:
        watched.requests.append(route.request.url)
        if route.request.url.startswith(f"{served}/"):
            route.continue_()
        else:
            route.abort()  # what a machine without internet would get

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_init_script(REPORT_CSP_VIOLATIONS)
            context.route("**/*", only_the_app)
            tab = context.new_page()
            tab.set_default_timeout(TIMEOUT_MS)
            tab.on("console", watched.console)
            tab.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
            yield tab, watched
        finally:
            browser.close()


# feature: items
# Swagger UI driven as a user would: Authorize (password flow) -> POST an item -> GET it.
@pytest.fixture
def account(served: str, database_url: str) -> Iterator[tuple[str, str]]:
    """(email, password) of a user registered through the API. The served app commits, so the
    user is deleted afterwards (its items cascade): other tests count users."""
    email = f"docs-{secrets.token_hex(6)}@example.com"
    password = secrets.token_urlsafe(18)
    response = httpx.post(
        f"{served}/api/v1/auth/register", json={"email": email, "password": password}
    )
    assert response.status_code == 201, response.text
    try:
        yield email, password
    finally:
        # Its own thread: Playwright's sync API keeps an event loop running in this one.
        with ThreadPoolExecutor(max_workers=1) as thread:
            thread.submit(asyncio.run, _delete_user(database_url, email)).result()


async def _delete_user(database_url: str, email: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("DELETE FROM users WHERE email = $1", email)
    finally:
        await connection.close()


def _authorize(tab: Page, email: str, password: str) -> None:

    tab.locator(".scheme-container button.authorize").click()
    dialog = tab.locator(".modal-ux")
    dialog.locator("#oauth_username").fill(email)
    dialog.locator("#oauth_password").fill(password)
    with tab.expect_response(lambda r: r.url.endswith("/api/v1/auth/token")) as login:
        dialog.locator(".auth-btn-wrapper button.authorize").click()
    assert login.value.status == 200
    # Swagger UI swaps the dialog's Authorize button for Logout once it holds a token.
    expect(dialog.locator(".auth-btn-wrapper button.authorize")).to_have_text("Logout")
    dialog.locator(".auth-btn-wrapper button.btn-done").click()


def _execute(tab: Page, operation_id: str, method: str, status: int) -> dict[str, object]:
    """Runs the operation's filled-in "Try it out" form; its answer as the UI shows it."""

    block = tab.locator(f"#operations-items-{operation_id}")
    with tab.expect_response(lambda r: r.request.method == method and "/items" in r.url) as sent:
        block.locator("button.execute").click()
    assert sent.value.status == status, sent.value.text()
    assert sent.value.request.headers["authorization"].startswith("Bearer ")
    live = block.locator(".live-responses-table tbody")
    expect(live.locator(".response-col_status").first).to_have_text(str(status))
    body: dict[str, object] = json.loads(
        live.locator(".response-col_description pre").first.inner_text()
    )
    return body


def _open(tab: Page, operation_id: str) -> Locator:

    block = tab.locator(f"#operations-items-{operation_id}")
    block.locator(".opblock-summary-control").click()
    block.locator("button.try-out__btn").click()
    return block


def test_swagger_ui_authorize_create_and_read_an_item_offline(
    page: tuple[Page, Watched], account: tuple[str, str]
) -> None:
    tab, watched = page
    email, password = account
    response = tab.goto(f"{watched.base}/docs")
    assert response is not None
    assert response.status == 200
    tab.locator(".swagger-ui .info .title").wait_for()
    _authorize(tab, email, password)

    create = _open(tab, "create_item")
    title = f"offline docs {secrets.token_hex(4)}"
    create.locator("textarea.body-param__text").fill(json.dumps({"title": title}))
    created = _execute(tab, "create_item", "POST", 201)
    assert created["title"] == title

    read = _open(tab, "get_item")
    read.locator('input[placeholder="item_id"]').fill(str(created["id"]))
    assert _execute(tab, "get_item", "GET", 200) == created
    watched.assert_offline_and_clean()


# end feature: items
def test_redoc_renders_offline(page: tuple[Page, Watched]) -> None:

    tab, watched = page
    response = tab.goto(f"{watched.base}/redoc")
    assert response is not None
    assert response.status == 200
    expect(tab.locator(".api-info h1")).to_contain_text("keel")
    # feature: items
    expect(tab.get_by_role("menuitem", name="items")).to_be_visible()
    expect(tab.get_by_role("heading", name="Create an item")).to_be_visible()
    # end feature: items
    tab.wait_for_load_state("networkidle")
    watched.assert_offline_and_clean()
