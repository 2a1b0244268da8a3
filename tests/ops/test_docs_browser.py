"""The real docs page in headless Chromium: it renders offline, its Authorize dialog logs in, and
"Try it out" then sends the caller's token.

Needs Debian's Chromium (`apt-get install -y chromium`, i.e. /usr/bin/chromium); without it these
tests fail rather than skip. The app is served over real HTTP on 127.0.0.1 with a SQLite database,
and browsed under a public-looking host name that Chromium maps there.
"""

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Locator, Page, Playwright, Response, Route, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from werkzeug.serving import make_server

from tests.conftest import FAST_ARGON2, PASSWORD, REDIS_URL
from todoapi import create_app
from todoapi.db import db

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# The pages are browsed under a public-looking name, as in production, rather than 127.0.0.1.
HOST = "docs.todoapi.test"
CHROMIUM_ARGS = [
    f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-standalone-preset.js", "swagger-ui-bundle.js")


@dataclass
class Server:
    url: str
    client: FlaskClient

    def account_with_todo(self, title: str) -> str:
        """Register a fresh account holding one todo called `title`; returns its email."""
        email = f"docs-{uuid.uuid4().hex[:12]}@example.com"
        created = self.client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.get_json()
        login = self.client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.get_json()
        headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
        todo = self.client.post("/todos", json={"title": title}, headers=headers)
        assert todo.status_code == 201, todo.get_json()
        return email


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright_driver: Playwright) -> Iterator[Browser | str]:
    """The launched browser, or why it could not start (the test then fails with that message)."""
    if not CHROMIUM.is_file():
        yield (
            f"Chromium is not installed at {CHROMIUM}; the docs-page browser tests need it. "
            "Install Debian's package: `apt-get install -y chromium`."
        )
        return
    try:
        browser = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    except PlaywrightError as error:
        yield f"Chromium at {CHROMIUM} did not start: {error}"
        return
    yield browser
    browser.close()


@pytest.fixture
def server(sqlite_template: Path, tmp_path: Path) -> Iterator[Server]:
    """The app on a copy of the migrated SQLite template, served by werkzeug on an ephemeral port."""
    path = tmp_path / "todo.db"
    shutil.copy(sqlite_template, path)
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{path}",
            "REDIS_URL": REDIS_URL,
            "ARGON2_PARAMETERS": FAST_ARGON2,
        }
    )
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="docs-browser-server", daemon=True)
    thread.start()
    try:
        yield Server(url=f"http://{HOST}:{http.server_port}", client=app.test_client())
    finally:
        http.shutdown()
        thread.join(timeout=10)
        http.server_close()
        if db.obj is not None:
            db.close()


# What the pages' policy blocks on purpose: Redoc's bundle always shows Redocly's logo from its CDN.
BLOCKED_ON_PURPOSE = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@contextmanager
def docs_browser(chromium: Browser | str, server: Server) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page (no stored authorization) that may reach only the app, and the errors it logs:
    anything else it asks for is recorded and aborted, and the test fails if the page tried to
    reach it, or if the page logged an error (a script error, or anything its
    Content-Security-Policy refused) but the one blocked on purpose."""
    if isinstance(chromium, str):
        pytest.fail(chromium, pytrace=False)
    origin = urlsplit(server.url)
    elsewhere: list[str] = []
    errors: list[str] = []

    def only_the_app(route: Route) -> None:
        target = urlsplit(route.request.url)
        if (target.scheme, target.netloc) == (origin.scheme, origin.netloc):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", only_the_app)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        yield page, errors
    finally:
        context.close()
    assert not elsewhere, f"the docs page tried to reach other hosts: {elsewhere}"
    assert [error for error in errors if BLOCKED_ON_PURPOSE not in error] == []


def open_docs(page: Page, server: Server) -> None:
    """Load /docs and check Swagger UI rendered the spec from assets the app served itself."""
    assets: dict[str, int] = {}

    def record(response: Response) -> None:
        path = urlsplit(response.url).path
        if path.startswith("/docs/assets/"):
            assets[path.removeprefix("/docs/assets/")] = response.status

    page.on("response", record)
    page.goto(f"{server.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("todoapi")
    expect(todos_get(page)).to_be_visible()
    page.remove_listener("response", record)
    for name in SWAGGER_ASSETS:
        assert assets.get(name) == 200, f"{name} not served from /docs/assets/: {assets}"


def todos_get(page: Page) -> Locator:
    return page.locator(".opblock.opblock-get").filter(
        has=page.locator('.opblock-summary-path[data-path="/todos"]')
    )


def auth_container(page: Page, scheme: str) -> Locator:
    return page.locator(".modal-ux .auth-container").filter(has=page.locator("h4", has_text=scheme))


def execute_list_todos(page: Page) -> Locator:
    """Try it out -> Execute on GET /todos; returns the "Server response" row."""
    operation = todos_get(page)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    row = operation.locator(".live-responses-table .response")
    expect(row.locator(".response-col_status")).to_have_text("200")
    return row


def response_body(row: Locator) -> dict[str, Any]:
    text = row.locator(".response-col_description .highlight-code pre").first.inner_text()
    body: dict[str, Any] = json.loads(text)
    return body


def test_authorize_with_oauth2_password_then_try_it_out(chromium: Browser | str, server: Server) -> None:
    title = f"seen through the docs {uuid.uuid4().hex[:8]}"
    email = server.account_with_todo(title)
    with docs_browser(chromium, server) as (page, _):
        open_docs(page, server)

        page.locator(".auth-wrapper .btn.authorize").click()
        dialog = auth_container(page, "oauth2Password")
        dialog.locator("#oauth_username").fill(email)
        dialog.locator("#oauth_password").fill(PASSWORD)
        with page.expect_response(lambda r: urlsplit(r.url).path == "/auth/login") as login:
            dialog.get_by_role("button", name="Authorize", exact=True).click()
        assert login.value.status == 200, login.value.text()
        sent_form = parse_qs(login.value.request.post_data or "")
        assert sent_form["grant_type"] == ["password"]
        assert sent_form["username"] == [email]
        token = login.value.json()["access_token"]
        expect(dialog.get_by_role("button", name="Logout")).to_be_visible()
        expect(dialog.locator(".errors")).to_have_count(0)
        dialog.get_by_role("button", name="Close").click()
        expect(page.locator(".modal-ux")).to_have_count(0)

        with page.expect_request(lambda r: urlsplit(r.url).path == "/todos") as sent:
            row = execute_list_todos(page)
        assert sent.value.headers.get("authorization") == f"Bearer {token}"
        body = response_body(row)
        assert "items" in body
        assert [item["title"] for item in body["items"]] == [title]


def test_authorize_with_pasted_bearer_token_then_try_it_out(chromium: Browser | str, server: Server) -> None:
    title = f"pasted token {uuid.uuid4().hex[:8]}"
    email = server.account_with_todo(title)
    login = server.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.get_json()
    token = login.get_json()["access_token"]
    with docs_browser(chromium, server) as (page, _):
        open_docs(page, server)

        page.locator(".auth-wrapper .btn.authorize").click()
        dialog = auth_container(page, "bearerAuth")
        dialog.locator("input").fill(token)
        dialog.get_by_role("button", name="Authorize", exact=True).click()
        expect(dialog.get_by_role("button", name="Logout")).to_be_visible()
        dialog.get_by_role("button", name="Close").click()
        expect(page.locator(".modal-ux")).to_have_count(0)

        with page.expect_request(lambda r: urlsplit(r.url).path == "/todos") as sent:
            row = execute_list_todos(page)
        assert sent.value.headers.get("authorization") == f"Bearer {token}"
        body = response_body(row)
        assert [item["title"] for item in body["items"]] == [title]


def test_redoc_renders_and_searches_the_spec_from_the_apps_own_bundle(
    chromium: Browser | str, server: Server
) -> None:
    with docs_browser(chromium, server) as (page, errors):
        bundle_path = "/redoc/assets/redoc.standalone.js"
        with page.expect_response(lambda r: urlsplit(r.url).path == bundle_path) as bundle:
            page.goto(f"{server.url}/redoc")
        assert bundle.value.status == 200
        expect(page.locator(".api-info h1")).to_contain_text("todoapi")
        # An operation of the spec, rendered with its summary (Redoc renders sections lazily).
        operation = page.locator("[data-section-id='tag/todos/paths/~1todos/get']")
        expect(operation.locator("h2").first).to_contain_text("List todos", timeout=TIMEOUT_MS)
        # Search runs in a worker the page's policy must allow.
        page.get_by_role("textbox", name="Search").fill("List todos")
        expect(page.locator("[data-role='search:results'] li").first).to_contain_text("List todos")
        # The logo was asked for, and the policy (not the test's network cut) refused it.
        assert any(BLOCKED_ON_PURPOSE in error and "Content Security Policy" in error for error in errors)
