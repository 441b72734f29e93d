"""The store port: everything the service persists or reads.

Contract (checked by tests/contract/test_store.py against every implementation):

- Every event of a conversation's stream (message new/edited/deleted,
  membership changes, renames) takes the conversation's next ``seq`` in the
  transaction that stores it; per conversation seqs are gap-free and strictly
  increasing. ``append_messages`` stores items in the order given.
- A ``(sender, conversation, client_msg_id)`` seen before returns the stored
  message with ``created=False`` and stores nothing.
- Membership is checked inside the transaction that writes.
- ``get_or_create_direct`` never creates two direct conversations for a pair.
"""

from __future__ import annotations

from typing import Protocol

from hubbub.errors import HubbubError
from hubbub.models import (
    Conversation,
    ConversationSummary,
    Device,
    DoNotDisturb,
    Message,
    Notifications,
    Page,
    Receipt,
    Replay,
    RoomSummary,
    SearchPage,
    SendItem,
    StreamEvent,
    Upload,
    Version,
)
from hubbub.store.push import Decision, Due, Outgoing, Settled, Ticket

Appended = tuple[Message, bool] | HubbubError
"""Per item: ``(message, created)``, or the error that refused that item."""


class Store(Protocol):
    """What the service needs from a database. Each method is one transaction."""

    async def open(self, migrate: bool = True) -> None:
        """Connect; with ``migrate``, first bring the schema up to date."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database does not answer."""

    # Users
    async def set_user_name(self, user_id: str, name: str, now_ms: int) -> None: ...
    async def set_last_seen(self, user_id: str, now_ms: int) -> None: ...
    async def set_last_seen_many(self, seen: list[tuple[str, int]]) -> None:
        """``(user, ms)`` pairs, written in one transaction."""

    async def last_seen(self, user_ids: list[str]) -> dict[str, int | None]: ...
    async def contacts(self, user: str, largest: int | None = None) -> list[str]:
        """Users sharing a direct conversation or a group (not a room) with ``user``.

        With ``largest``: only through direct conversations and groups of at
        most that many members.
        """

    async def shared_with(self, user: str, others: list[str]) -> list[str]:
        """Which of ``others`` share a direct conversation or a group with ``user``."""

    # Conversations and membership
    async def get_or_create_direct(
        self, user_a: str, user_b: str, now_ms: int
    ) -> tuple[Conversation, bool]: ...
    async def create_group(
        self, owner: str, title: str, members: list[str], now_ms: int, kind: str = "group"
    ) -> Conversation: ...
    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...
    async def member_ids(self, conversation_id: str) -> list[str]:
        """Members of a conversation (empty when it does not exist)."""

    async def conversation_ids(self, users: list[str]) -> dict[str, list[str]]:
        """Per user of ``users``, every conversation they are a member of, hidden ones
        included (a user in none is left out)."""

    async def list_conversations(
        self, user: str, limit: int | None = None, after: tuple[int, str] | None = None
    ) -> list[ConversationSummary]:
        """The user's visible conversations, newest activity first, then by id.

        ``after``: only those after that ``(last_activity_at in ms, id)`` in
        this order; ``limit``: at most that many.
        """

    async def rename(self, user: str, cid: str, title: str, now_ms: int) -> list[StreamEvent]: ...
    async def add_members(
        self, user: str, cid: str, new: list[str], limit: int, now_ms: int
    ) -> list[StreamEvent]: ...
    async def remove_member(
        self, user: str, cid: str, target: str, now_ms: int
    ) -> list[StreamEvent]:
        """``target == user`` is leaving."""

    async def set_role(
        self, user: str, cid: str, target: str, role: str, now_ms: int
    ) -> list[StreamEvent]: ...
    async def list_rooms(self, user: str, limit: int, offset: int) -> list[RoomSummary]: ...
    async def join_room(
        self, user: str, cid: str, limit: int, now_ms: int
    ) -> list[StreamEvent]: ...
    async def set_hidden(self, user: str, cid: str, hidden: bool) -> None: ...

    # Blocks
    async def block(self, blocker: str, blocked: str, now_ms: int) -> bool: ...
    async def unblock(self, blocker: str, blocked: str) -> bool: ...
    async def blocked_by(self, user: str) -> list[str]: ...
    async def blockers_of(self, user: str) -> list[str]: ...

    # Messages and the stream
    async def append_messages(
        self, sender: str, items: list[SendItem], now_ms: int, as_server: bool = False
    ) -> list[Appended]:
        """``as_server``: the app's backend posting; no membership needed."""

    async def react(
        self, user: str, mid: str, emoji: str, add: bool, now_ms: int
    ) -> tuple[str, int, bool]:
        """``(conversation_id, count of that emoji, whether anything changed)``."""

    async def search(
        self, user: str, text: str, cid: str | None, limit: int, offset: int
    ) -> SearchPage:
        """Ranked matches in the user's conversations; deleted messages never match."""

    async def create_upload(
        self, upload_id: str, owner: str, name: str, ctype: str, size: int, now_ms: int
    ) -> Upload: ...
    async def get_upload(self, user: str, upload_id: str) -> Upload:
        """For its owner or members of a conversation where it was sent."""

    async def edit_message(self, user: str, mid: str, body: str, now_ms: int) -> StreamEvent: ...
    async def delete_message(self, user: str, mid: str, now_ms: int) -> StreamEvent: ...
    async def get_message(self, user: str, mid: str) -> Message: ...
    async def message_versions(self, user: str, mid: str) -> list[Version]: ...
    async def list_messages(
        self,
        user: str,
        conversation_id: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> Page:
        """A page of history in ascending seq; raises NotFound/Forbidden."""

    async def replay(self, user: str, cursors: dict[str, int], limit: int) -> list[Replay]:
        """Stream events after each cursor, in one consistent read."""

    async def events_after(self, cid: str, after: int, limit: int) -> list[StreamEvent]:
        """Stream events after a seq, for a process filling a gap in live delivery."""

    async def mark(self, user: str, cid: str, kind: str, seq: int) -> Receipt | None:
        """Move a read/delivered pointer forward (never back); None if it did not move."""

    async def unread(self, user: str) -> dict[str, int]: ...


class PushStore(Protocol):
    """Devices, push settings and the push outbox (``store/push.py`` has the steps)."""

    async def register_device(
        self, user: str, provider: str, token: str, platform: str, app_id: str | None, now_ms: int
    ) -> Device:
        """Add or update the device with this token; it belongs to ``user`` from now on."""

    async def list_devices(self, user: str) -> list[Device]: ...
    async def delete_device(self, user: str, device_id: str) -> None:
        """NotFound unless it is one of the user's devices."""

    async def set_notifications(
        self, user: str, cid: str, level: str, until_ms: int | None
    ) -> Notifications: ...
    async def get_notifications(self, user: str, cid: str) -> Notifications: ...
    async def set_dnd(self, user: str, until_ms: int | None, now_ms: int) -> DoNotDisturb: ...
    async def get_dnd(self, user: str) -> DoNotDisturb: ...

    async def push_expand(self, now_ms: int, window_ms: int, limit: int) -> int:
        """Noted messages into outbox rows; how many notes were taken."""

    async def push_claim_due(
        self, now_ms: int, lease: str, lease_ms: int, limit: int
    ) -> list[Due]: ...
    async def push_settle_due(
        self, lease: str, decisions: list[Decision], now_ms: int, window_ms: int
    ) -> int:
        """Record the decisions on leased rows; the pushes queued."""

    async def push_claim_sends(
        self, now_ms: int, lease: str, lease_ms: int, limit: int, providers: list[str]
    ) -> list[Outgoing]:
        """Lease due pushes to devices of these providers."""

    async def push_expire_sends(self, before_ms: int, now_ms: int) -> int:
        """Drop unheld pushes of messages older than ``before_ms``; how many."""

    async def push_renew_sends(self, lease: str, ids: list[str], until_ms: int) -> list[str]:
        """Extend the lease of these pushes to ``until_ms``; the ids still held under it."""

    async def push_settle_sends(self, lease: str, settled: Settled, now_ms: int) -> None: ...
    async def push_claim_tickets(self, now_ms: int, lease_ms: int, limit: int) -> list[Ticket]: ...
    async def push_settle_tickets(
        self, done: list[str], gone: list[str], retry: dict[str, int]
    ) -> None:
        """Forget ``done`` tickets, remove ``gone`` devices, send ``retry`` ones again then."""

    async def push_backlog(self) -> tuple[int, int | None]:
        """Rows waiting in the outbox, and the oldest one's message time."""
