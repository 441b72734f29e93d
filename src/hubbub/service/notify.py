"""What a push tells: the pure rules, from a due outbox row to a ``Notice``.

A recipient is told of the messages after what they have read (or were
already told of) that are not their own, not deleted, and not from someone
either of them has blocked, unless do-not-disturb is on or the conversation
is set to ``none``; with ``mentions``, only messages that mention them
(``@`` and their user id) or reply to one of theirs.
"""

from __future__ import annotations

import random
import re

from hubbub.push.base import Notice
from hubbub.service.chat import SYSTEM_SENDER
from hubbub.store.push import Due, Noted

SNIPPET = 180
"""Characters of a message's text a preview shows."""
GENERIC = "New message"
ATTACHMENT = {"image": "sent a photo", "file": "sent a file"}
SYSTEM_TITLE = "Notice"
"""The title of a system message (the server API's) outside a titled conversation."""


def mentions(body: str, user: str) -> bool:
    """Whether ``body`` mentions ``@user`` (the id as a whole word)."""
    return re.search(rf"(?<![\w@])@{re.escape(user)}(?![\w-])", body) is not None


def level(due: Due, now_ms: int) -> str:
    """The conversation's setting as of now (``all`` once its ``until`` has passed)."""
    if due.level_until is not None and due.level_until <= now_ms:
        return "all"
    return due.level


def notable(due: Due, now_ms: int) -> list[Noted]:
    """The messages, newest first, this push is to tell of (none: no push)."""
    if not due.member or not due.devices:
        return []
    if due.dnd_until is not None and due.dnd_until > now_ms:
        return []
    setting = level(due, now_ms)
    if setting == "none":
        return []
    told = [m for m in due.messages if m.sender_id not in due.blocked]
    if setting == "mentions":
        told = [m for m in told if m.replies_to_recipient or mentions(m.body, due.user_id)]
    return told


def snippet(message: Noted) -> str:
    text = " ".join(message.body.split())
    if not text:
        return ATTACHMENT.get(message.kind, GENERIC)
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1].rstrip() + "…"


def notice(due: Due, told: list[Noted], preview: bool) -> Notice:
    newest = told[0]
    sender = newest.sender_name or newest.sender_id
    if newest.sender_id == SYSTEM_SENDER:  # the app's backend: the conversation speaks
        title = due.title or SYSTEM_TITLE
    elif due.kind == "direct" or not due.title:
        title = sender
    else:
        title = f"{sender} in {due.title}"
    count = len(told)
    many = f"{count}{'+' if due.more and count == len(due.messages) else ''} new messages"
    if preview:
        body = snippet(newest) if count == 1 else f"{many} · {snippet(newest)}"
    else:
        body = GENERIC if count == 1 else many
    return Notice(
        title=title,
        body=body,
        badge=due.badge,
        collapse_id=due.conversation_id,
        data={
            "type": "message",
            "conversation_id": due.conversation_id,
            "message_id": newest.id,
            "seq": newest.seq,
            "count": count,
        },
    )


def backoff(attempts: int, after: float | None, base: float, cap: float) -> float:
    """Seconds before the next try: doubling from ``base`` up to ``cap``, with jitter.

    Half the delay is fixed and half random, so retries after an outage spread
    out; a provider's Retry-After is a floor.
    """
    delay = min(cap, base * 2.0 ** min(attempts, 32))
    jittered = delay / 2 + random.uniform(0, delay / 2)
    return max(jittered, after or 0.0)
