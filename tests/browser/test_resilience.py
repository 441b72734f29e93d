"""The web app through a lost network and a refused WebSocket."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import REQUIRED, Open
from tests.browser.ui import bodies, open_conversation, send
from tests.support import ServerProcess, open_direct

if not REQUIRED:  # without playwright: skipped with the reason (CI: fails)
    pytest.importorskip("playwright", reason="playwright is not installed")
from playwright.async_api import BrowserContext, WebSocketRoute, expect


class Network:
    """Bob's network. Chromium's offline emulation blocks new requests but leaves
    open WebSockets alone, where a real outage kills them: so Bob's WebSockets go
    through Playwright, which cuts them when the network goes and refuses new
    ones until it is back."""

    def __init__(self) -> None:
        self.up = True
        self.open: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    async def route(self, ws: WebSocketRoute) -> None:
        if not self.up:
            await ws.close()
            return
        self.open.append((ws, ws.connect_to_server()))

    async def install(self, context: BrowserContext) -> None:
        await context.route_web_socket(re.compile(r"/ws(\?|$)"), self.route)

    async def cut(self, context: BrowserContext) -> None:
        self.up = False
        await context.set_offline(True)
        while self.open:
            page_side, server_side = self.open.pop()
            await server_side.close()
            await page_side.close()

    async def restore(self, context: BrowserContext) -> None:
        self.up = True
        await context.set_offline(False)


async def test_offline_and_back_every_message_once(
    web_server: ServerProcess, open_tab: Open
) -> None:
    open_direct(web_server, "alice-off", "bob-off")
    alice = await open_tab(web_server, "alice-off", "Alice")
    network = Network()
    bob = await open_tab(web_server, "bob-off", "Bob", before=network.install)
    await open_conversation(alice, "Bob")
    await open_conversation(bob, "Alice")
    await send(alice, "before")
    await expect(bodies(bob, "before")).to_have_count(1)

    await network.cut(bob.context)
    await expect(bob.page.locator("#banner")).to_be_visible()
    await expect(bob.page.locator("#conn")).to_have_text("Reconnecting…")
    for text in ("while away 1", "while away 2", "while away 3"):
        await send(alice, text)
        await expect(bodies(alice, text)).to_have_count(1)
    for text in ("from the train 1", "from the train 2"):
        await send(bob, text)
        tick = bodies(bob, text).locator(".tick")
        await expect(tick).to_have_attribute("data-status", "pending")
    await expect(bodies(bob, "while away 1")).to_have_count(0)

    await network.restore(bob.context)
    await expect(bob.page.locator("#conn")).to_have_attribute("data-state", "connected")
    await expect(bob.page.locator("#banner")).to_be_hidden()
    everything = ["before", "while away 1", "while away 2", "while away 3"]
    everything += ["from the train 1", "from the train 2"]
    for tab in (alice, bob):
        for text in everything:
            await expect(bodies(tab, text)).to_have_count(1)
        await expect(tab.page.locator("#message-list .msg")).to_have_count(len(everything))
    # In order on both sides, and Bob's sends went all the way to read.
    for tab in (alice, bob):
        assert await tab.page.locator("#message-list .msg .body").all_text_contents() == everything
    await expect(bodies(bob, "from the train 2").locator(".tick")).to_have_attribute(
        "data-status", "read"
    )
    alice.check()
    # What it tried while offline, and a send that Playwright's WebSocket
    # stand-in (the page's WebSocket while routed) logs as sent on a closed socket.
    bob.check("net::ERR_INTERNET_DISCONNECTED", "WebSocket is already in CLOSING or CLOSED state")


async def test_websocket_refused_falls_back_to_sse(
    web_server: ServerProcess, open_tab: Open
) -> None:
    open_direct(web_server, "alice-sse", "bob-sse")
    alice = await open_tab(web_server, "alice-sse", "Alice")

    async def refuse(ws: WebSocketRoute) -> None:
        await ws.close()

    async def no_websockets(context: BrowserContext) -> None:
        await context.route_web_socket(re.compile(r"/ws(\?|$)"), refuse)

    # Bob's browser cannot hold a WebSocket: every attempt is closed at once.
    bob = await open_tab(web_server, "bob-sse", "Bob", before=no_websockets)
    await expect(bob.page.locator("#conn")).to_have_attribute("data-transport", "sse")
    await expect(bob.page.locator("#conn")).to_have_text("Connected · SSE (HTTP fallback)")
    await expect(alice.page.locator("#conn")).to_have_attribute("data-transport", "websocket")

    await open_conversation(alice, "Bob")
    await open_conversation(bob, "Alice")
    await send(alice, "over the websocket")
    await expect(bodies(bob, "over the websocket")).to_have_count(1)
    await send(bob, "over server-sent events")
    await expect(bodies(alice, "over server-sent events")).to_have_count(1)
    await expect(bodies(bob, "over server-sent events").locator(".tick")).to_have_attribute(
        "data-status", "read"
    )
    await bob.page.locator("#input").press_sequentially("typing over sse")
    await expect(alice.page.locator("#typing")).to_have_text("Bob is typing…")
    alice.check()
    bob.check()
