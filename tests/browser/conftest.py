"""The web app in a real browser: Debian's Chromium driven by Playwright (async API).

Without playwright, chromium or the built app (``make web``) these tests skip
with the reason; with ``HUBBUB_REQUIRE_BROWSER=1`` (CI) they fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hubbub.api.web import BUNDLE, STATIC_DIR
from tests.browser.ui import Tab
from tests.support import ServerProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
REQUIRED = os.environ.get("HUBBUB_REQUIRE_BROWSER") == "1"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if shutil.which("chromium") is None:
        return "no chromium on PATH (apt-get install chromium)"
    if not (STATIC_DIR / BUNDLE).is_file():
        return f"the web app is not built ({STATIC_DIR / BUNDLE} is missing: run make web)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    reason = missing()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"HUBBUB_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--no-sandbox"], headless=True
        )
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A dev-mode hubbub shared by a module's tests; users go offline 1 s after leaving."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("web"), HUBBUB_ENV="dev", HUBBUB_PRESENCE_GRACE="1"
    ).start()
    yield proc
    proc.stop()


Open = Callable[..., Awaitable[Tab]]


@pytest.fixture(scope="session", autouse=True)
def _artifacts() -> None:
    ARTIFACTS.mkdir(exist_ok=True)


@pytest.fixture
async def open_tab(browser: Browser) -> AsyncIterator[Open]:
    """``await open_tab(server, "alice", "Alice")``: a new browser context signed in."""
    from playwright.async_api import expect

    tabs: list[Tab] = []

    async def open_tab(
        server: ServerProcess,
        user: str,
        name: str | None = None,
        path: str = "/",
        before: Callable[[BrowserContext], Awaitable[None]] | None = None,
    ) -> Tab:
        context = await browser.new_context(
            base_url=server.url, viewport={"width": 1100, "height": 720}
        )
        if before is not None:
            await before(context)
        page = await context.new_page()
        tab = Tab(context, page)
        page.on("pageerror", lambda e: tab.errors.append(f"page error: {e}"))

        def on_console(message: Any) -> None:
            if message.type == "error":
                tab.errors.append(f"console error: {message.text}")

        page.on("console", on_console)

        async def on_dialog(dialog: Any) -> None:
            if tab.accept_dialogs and dialog.type == "confirm":
                await dialog.accept()
                return
            tab.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        tabs.append(tab)
        await page.goto(path)
        await page.fill("#dev-signin [name=user_id]", user)
        if name:
            await page.fill("#dev-signin [name=name]", name)
        await page.click("#dev-signin button[type=submit]")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        return tab

    yield open_tab
    for tab in tabs:
        await tab.context.close()
