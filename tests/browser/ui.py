"""Steps shared by the browser tests: a signed-in tab, opening a chat, sending."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Locator, Page


@dataclass
class Tab:
    """A signed-in page, with what went wrong in it (errors, CSP violations, dialogs)."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    accept_dialogs: bool = False
    """Accept confirm() dialogs (else they are dismissed and count as unexpected)."""

    def check(self, *expected: str) -> None:
        """No page errors or console errors (but those containing one of ``expected``)."""
        errors = [e for e in self.errors if not any(x in e for x in expected)]
        assert not errors, errors
        assert not self.dialogs, self.dialogs


async def open_conversation(tab: Tab, title: str) -> None:
    from playwright.async_api import expect

    await tab.page.locator(".conv", has_text=title).click()
    await expect(tab.page.locator("#chat-title")).to_have_text(title)


async def send(tab: Tab, text: str) -> None:
    await tab.page.fill("#input", text)
    await tab.page.press("#input", "Enter")


def bodies(tab: Tab, text: str) -> Locator:
    """The message nodes whose body is exactly ``text``."""
    return tab.page.locator("#message-list .msg").filter(has=tab.page.get_by_text(text, exact=True))
