"""Two people chat through the web app, each in a browser context of their own."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS, REQUIRED, Open
from tests.browser.ui import bodies, open_conversation, send
from tests.support import ServerProcess, auth, create_group

if not REQUIRED:  # without playwright: skipped with the reason (CI: fails)
    pytest.importorskip("playwright", reason="playwright is not installed")
from playwright.async_api import FilePayload, expect


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_two_people_chat(web_server: ServerProcess, open_tab: Open) -> None:
    alice = await open_tab(web_server, "alice-chat", "Alice")
    bob = await open_tab(web_server, "bob-chat", "Bob")
    a, b = alice.page, bob.page

    # Alice opens a direct chat from the UI; it appears on Bob's side by itself.
    await a.click("#new-direct")
    await a.fill("#new-form [name=user]", "bob-chat")
    await a.click("#new-create")
    await expect(a.locator("#chat-title")).to_have_text("Bob")
    await expect(b.locator(".conv", has_text="Alice")).to_be_visible()
    # Presence: both are online, each sees the other's dot.
    await expect(a.locator("#chat-sub")).to_have_attribute("data-presence", "online")
    await expect(b.locator(".conv", has_text="Alice")).to_have_attribute("data-presence", "online")

    # Alice writes; Bob, elsewhere, gets a preview and an unread badge.
    await send(alice, "Hi Bob, lunch today?")
    conv_b = b.locator(".conv", has_text="Alice")
    await expect(conv_b.locator(".conv-preview")).to_have_text("Hi Bob, lunch today?")
    await expect(conv_b.locator(".badge")).to_have_text("1")
    tick = bodies(alice, "Hi Bob, lunch today?").locator(".tick")
    await expect(tick).to_have_attribute("data-status", "delivered")

    # Bob opens it: the badge goes, Alice's tick turns to read.
    await open_conversation(bob, "Alice")
    await expect(bodies(bob, "Hi Bob, lunch today?")).to_have_count(1)
    await expect(conv_b.locator(".badge")).to_have_count(0)
    await expect(tick).to_have_attribute("data-status", "read")

    # Bob types: Alice sees it; he sends: it goes away and the reply shows.
    await b.locator("#input").press_sequentially("Sure")
    await expect(a.locator("#typing")).to_have_text("Bob is typing…")
    await b.press("#input", "Enter")
    await expect(bodies(alice, "Sure")).to_have_count(1)
    await expect(a.locator("#typing")).to_have_text("")
    await expect(bodies(bob, "Sure").locator(".tick")).to_have_attribute("data-status", "read")

    await a.screenshot(path=str(ARTIFACTS / "chat-alice.png"))
    await b.screenshot(path=str(ARTIFACTS / "chat-bob.png"))

    # Bob leaves: after the grace period Alice sees him offline.
    await bob.context.close()
    await expect(a.locator("#chat-sub")).to_have_attribute("data-presence", "offline")
    await expect(a.locator(".conv", has_text="Bob")).to_have_attribute("data-presence", "offline")
    alice.check()
    bob.check()


async def test_reply_react_edit_delete(web_server: ServerProcess, open_tab: Open) -> None:
    create_group(web_server, "carol-act", ["dave-act"], title="Actions")
    carol = await open_tab(web_server, "carol-act", "Carol")
    dave = await open_tab(web_server, "dave-act", "Dave")
    await open_conversation(carol, "Actions")
    await open_conversation(dave, "Actions")
    c, d = carol.page, dave.page

    await send(carol, "First draft")
    original = bodies(dave, "First draft")
    await expect(original).to_have_count(1)
    await expect(original.locator(".sender")).to_have_text("Carol")

    # Dave replies to it.
    await original.hover()
    await original.locator(".act-reply").click()
    await expect(d.locator("#composer-context")).to_contain_text("Replying to Carol")
    await send(dave, "Looks good")
    await expect(bodies(carol, "Looks good").locator(".quote")).to_have_text("↩ Carol: First draft")

    # Dave reacts; Carol sees the count, then adds hers.
    await original.hover()
    await original.locator(".act-react").click()
    await original.locator('.picker [data-emoji="👍"]').click()
    mine = bodies(carol, "First draft")
    await expect(mine.locator('.chip[data-emoji="👍"]')).to_have_text("👍 1")
    await mine.locator('.chip[data-emoji="👍"]').click()
    await expect(original.locator('.chip[data-emoji="👍"]')).to_have_text("👍 2")
    await expect(mine.locator(".chip.me")).to_have_count(1)

    # Carol edits her message; Dave sees the new text, marked edited.
    await mine.hover()
    await mine.locator(".act-edit").click()
    await c.fill("#input", "Final text")
    await c.press("#input", "Enter")
    edited = bodies(dave, "Final text")
    await expect(edited.locator(".edited")).to_have_text("edited")
    await expect(bodies(dave, "First draft")).to_have_count(0)

    await d.screenshot(path=str(ARTIFACTS / "actions-dave.png"))

    # Carol deletes it (confirming); Dave sees a tombstone in its place.
    carol.accept_dialogs = True  # "Delete this message for everyone?"
    mine = bodies(carol, "Final text")
    await mine.hover()
    await mine.locator(".act-delete").click()
    await expect(d.locator("#message-list .msg.deleted .tombstone")).to_have_text("Message deleted")
    await expect(bodies(dave, "Final text")).to_have_count(0)
    # The reply stays, now quoting a deleted message.
    await expect(bodies(dave, "Looks good")).to_have_count(1)
    dave.check()
    carol.check()


async def test_scroll_back_search_and_files(web_server: ServerProcess, open_tab: Open) -> None:
    gid = create_group(web_server, "erin-hist", ["frank-hist"], title="History")
    with httpx.Client(base_url=web_server.url, headers=auth("erin-hist")) as http:
        for i in range(1, 46):
            r = http.post(
                f"/api/v1/conversations/{gid}/messages",
                json={"body": f"old message {i:02d}", "client_msg_id": f"h{i}"},
            )
            assert r.status_code == 201, r.text
    erin = await open_tab(web_server, "erin-hist", "Erin")
    frank = await open_tab(web_server, "frank-hist", "Frank")
    e, f = erin.page, frank.page
    await expect(f.locator(".conv", has_text="History").locator(".badge")).to_have_text("45")
    await open_conversation(frank, "History")

    # The newest page first; scrolling up loads the older ones.
    await expect(bodies(frank, "old message 45")).to_have_count(1)
    await expect(f.locator("#message-list .msg")).to_have_count(30)
    await f.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    await expect(f.locator("#message-list .msg")).to_have_count(45)
    await expect(bodies(frank, "old message 01")).to_have_count(1)
    await expect(f.locator("#older")).to_be_hidden()

    # Search finds a message; opening the result shows it in its conversation.
    await open_conversation(erin, "History")
    await e.fill("#search", "message 07")
    await e.press("#search", "Enter")
    result = e.locator(".result", has_text="old message 07")
    await expect(result).to_be_visible()
    await result.click()
    await expect(bodies(erin, "old message 07")).to_have_class("msg mine highlight")

    # An image and a file, previewed before sending, shown on the other side.
    png = solid_png(96, 64, (47, 111, 222))
    await e.set_input_files(
        "#file", files=[FilePayload(name="dot.png", mimeType="image/png", buffer=png)]
    )
    await expect(e.locator("#composer-files .file-chip img")).to_have_count(1)
    await e.fill("#input", "a tiny picture")
    await e.press("#input", "Enter")
    picture = bodies(frank, "a tiny picture")
    await expect(picture.locator("img.image")).to_have_attribute("src", re.compile("^blob:"))
    await expect(picture.locator("img.image")).to_have_attribute("alt", "dot.png")

    await e.set_input_files(
        "#file", files=[FilePayload(name="notes.txt", mimeType="text/plain", buffer=b"hello")]
    )
    await expect(e.locator("#composer-files .file-chip")).to_contain_text("notes.txt")
    await e.click("#send")
    file_button = f.locator("#message-list .msg .file", has_text="notes.txt")
    await expect(file_button).to_be_visible()
    await f.locator("#messages").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    await f.screenshot(path=str(ARTIFACTS / "files-frank.png"))
    async with f.expect_download() as download_info:
        await file_button.click()
    download = await download_info.value
    assert download.suggested_filename == "notes.txt"
    assert Path(await download.path()).read_bytes() == b"hello"
    erin.check()
    frank.check()
