"""What users type stays text; the page's CSP; the API from another origin; production."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import REQUIRED, Open
from tests.browser.ui import bodies, open_conversation, send
from tests.support import ServerProcess, create_group, free_port, token

if not REQUIRED:  # without playwright: skipped with the reason (CI: fails)
    pytest.importorskip("playwright", reason="playwright is not installed")
from playwright.async_api import Browser, expect

XSS = "<img src=x onerror=alert(1)>"


async def test_user_strings_render_as_text(web_server: ServerProcess, open_tab: Open) -> None:
    response = httpx.get(web_server.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"

    title = "<b>Launch</b> & <script>alert(2)</script>"
    create_group(web_server, "mallory-xss", ["victim-xss"], title=title)
    mallory = await open_tab(web_server, "mallory-xss", "<i>Mallory</i>")
    victim = await open_tab(web_server, "victim-xss", "Victim")
    await open_conversation(mallory, title)
    await send(mallory, XSS)
    await open_conversation(victim, title)

    page = victim.page
    message = bodies(victim, XSS)
    await expect(message.locator(".body")).to_have_text(XSS)
    await expect(message.locator(".sender")).to_have_text("<i>Mallory</i>")
    await expect(page.locator("#chat-title")).to_have_text(title)
    await expect(page.locator(".conv-preview")).to_have_text("<i>Mallory</i>: " + XSS)
    assert await page.locator("#message-list img").count() == 0
    assert await page.locator("#app b, #app i, #app script").count() == 0
    assert await page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    # No dialog fired (check() fails on any), no error, no CSP violation logged.
    victim.check()
    mallory.check()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """A second web server on another port: a page whose script calls hubbub with fetch."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        '<!doctype html><title>other</title><pre id="result">waiting</pre>'
        '<script src="call.js"></script>'
    )
    (site / "call.js").write_text(
        """
const [hubbub, token] = location.hash.slice(1).split("|");
fetch(hubbub + "/api/v1/conversations", {headers: {Authorization: "Bearer " + token}})
  .then(async (r) => { document.getElementById("result").textContent =
    "status " + r.status + " " + JSON.stringify(await r.json()); })
  .catch((e) => { document.getElementById("result").textContent = "refused " + e.name; });
"""
    )
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


async def test_rest_from_another_origin(
    browser: Browser, other_origin: str, web_server: ServerProcess, tmp_path: Path
) -> None:
    allowed = ServerProcess(tmp_path / "cors", HUBBUB_CORS_ORIGINS=other_origin).start()
    context = await browser.new_context()
    try:
        page = await context.new_page()
        result = page.locator("#result")
        await page.goto(f"{other_origin}/#{allowed.url}|{token('cors-user')}")
        await expect(result).to_have_text('status 200 {"conversations":[],"next_cursor":null}')
        # hubbub without HUBBUB_CORS_ORIGINS: the browser refuses the page the answer.
        await page.goto(f"{other_origin}/?again#{web_server.url}|{token('cors-user')}")
        await expect(result).to_have_text("refused TypeError")
    finally:
        await context.close()
        allowed.stop()


async def test_production_takes_a_pasted_token(browser: Browser, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "prod", HUBBUB_ENV="production").start()
    try:
        r = httpx.post(server.url + "/dev/token", json={"user_id": "alice"})
        assert r.status_code == 404, r.text
        context = await browser.new_context(base_url=server.url)
        page = await context.new_page()
        await page.goto("/")
        await expect(page.locator("#token-signin")).to_be_visible()
        await expect(page.locator("#dev-signin")).to_be_hidden()
        await page.fill("#token-signin textarea", "not a token")
        await page.click("#token-signin button")
        await expect(page.locator("#signin-error")).to_contain_text("not a token")
        await page.fill("#token-signin textarea", token("prod-user", name="Prod User"))
        await page.click("#token-signin button")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        await expect(page.locator("#me-name")).to_have_text("Prod User (prod-user)")
        await context.close()
    finally:
        server.stop()
