"""Browser-test fixtures: the real app on uvicorn in a thread (SQLite, the stub provider) and
one headless Chromium per test module (Debian's, at /usr/bin/chromium; Playwright's own browser
downloads are not used).

Without Chromium the browser tests skip with a message; PROMPTLEDGER_REQUIRE_SERVICES=1 (CI)
turns that skip into a failure. ``make test`` installs Chromium when it is missing.

Set PROMPTLEDGER_UI_SCREENSHOTS=docs/ui (``make screenshots``) to refresh the README's
screenshots from the browser tests.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from tests.conftest import REQUIRE_SERVICES
from tests.test_cli import free_port

from prompt_ledger.api.app import create_app
from prompt_ledger.config import Settings
from prompt_ledger.db import migrate
from prompt_ledger.scripts.seed_models import seed

CHROMIUM = Path(os.environ.get("PROMPTLEDGER_CHROMIUM", "/usr/bin/chromium"))
UI_KEY = "pl_ui_test_key_5d1e7a9c"
MODEL = "gpt-4o-mini"
SCREENSHOTS = os.environ.get("PROMPTLEDGER_UI_SCREENSHOTS")
LAPTOP = {"width": 1280, "height": 900}


@dataclass(frozen=True)
class UIServer:
    url: str
    api: httpx.Client  # the JSON API, authenticated: tests make data through it

    def run(self, prompt: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.api.post(
            "/v1/executions:run",
            json={"prompt_name": prompt, "variables": variables or {}, "model_name": MODEL},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def save(self, name: str, text: str) -> dict[str, Any]:
        response = self.api.put(f"/v1/prompts/{name}", json={"template_source": text})
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory, stub_server_url: str) -> Iterator[UIServer]:
    home = tmp_path_factory.mktemp("ui")
    url = f"sqlite:///{home / 'promptledger.db'}"
    migrate.upgrade(url)
    seed(url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        api_key=UI_KEY,  # type: ignore[arg-type]
        openai_api_key="sk-ui-test",  # type: ignore[arg-type]
        openai_base_url=stub_server_url,
        provider_timeout_s=5,
        execution_retry_delays=[0.05],  # type: ignore[arg-type]
        promptledger_home=home,
        sweep_interval_s=3600,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the UI test server did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, headers={"X-API-Key": UI_KEY}, timeout=10) as api:
        yield UIServer(base, api)
    server.should_exit = True
    thread.join(timeout=10)


def _chromium_missing(why: str) -> None:
    message = f"Chromium not available ({why}); `apt-get install chromium` (make test does)"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} — PROMPTLEDGER_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(message)


# Module scope, not session: while Playwright's sync API is running it marks an event loop
# as running on the main thread, which breaks every pytest-asyncio test after it. Stopping
# it when the browser tests' module ends clears that (one browser start per module).
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        _chromium_missing(f"no {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(executable_path=str(CHROMIUM))
        except Exception as exc:
            _chromium_missing(f"{CHROMIUM} does not start: {exc}")
        yield instance
        instance.close()


@dataclass
class Watched:
    """A page and what it reported: dialogs (alert/confirm/prompt) and console errors
    (a CSP violation, e.g. an inline script the policy blocked, is a console error)."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shoot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def _watched(
    browser: Any, *, viewport: dict[str, int], storage_state: Any = None
) -> Iterator[Watched]:
    context = browser.new_context(viewport=viewport, storage_state=storage_state)
    context.set_default_timeout(5000)
    page = context.new_page()
    watched = Watched(page)

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
    try:
        yield watched
    finally:
        context.close()


@pytest.fixture
def tab(browser: Any, ui_server: UIServer) -> Iterator[Watched]:
    """A fresh browser context (no cookies, empty localStorage), laptop-sized."""
    yield from _watched(browser, viewport=LAPTOP)


@pytest.fixture
def phone(browser: Any, ui_server: UIServer) -> Iterator[Watched]:
    yield from _watched(browser, viewport={"width": 390, "height": 844})


def sign_in(tab: Watched, server: UIServer, key: str = UI_KEY) -> None:
    page = tab.page
    page.goto(f"{server.url}/ui/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def session_cookies(browser: Any, ui_server: UIServer) -> Any:
    """Sign in through the form once; each signed-in test starts from these cookies."""
    for tab in _watched(browser, viewport=LAPTOP):
        sign_in(tab, ui_server)
        tab.page.wait_for_url("**/ui/prompts")
        return tab.page.context.storage_state()
    raise AssertionError("unreachable")


@pytest.fixture
def signed_in(browser: Any, ui_server: UIServer, session_cookies: Any) -> Iterator[Watched]:
    """A fresh context holding a signed-in session, on the prompts page."""
    for tab in _watched(browser, viewport=LAPTOP, storage_state=session_cookies):
        tab.page.goto(f"{ui_server.url}/ui/prompts")
        yield tab
