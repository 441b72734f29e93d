"""The store port over SQL: each method runs one function of the modules beside it.

The SQL is written once (``conversations``, ``members``, ``messages``,
``history``, ``receipts``, ``search``, ``uploads``, ``users``, ``blocks``)
against ``tx.Tx``; a subclass says how to run such a function as one
transaction (``transaction``): ``SQLiteStore`` on its writer thread,
``PostgresStore`` on a pooled connection.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from hubbub.errors import TooLarge
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
from hubbub.store import (
    blocks,
    conversations,
    history,
    members,
    messages,
    push,
    receipts,
    search,
    uploads,
    users,
)
from hubbub.store.base import Appended
from hubbub.store.tx import Tx

P = ParamSpec("P")
T = TypeVar("T")
READ_BUDGET = 5.0
"""Seconds one read may take (HUBBUB_READ_BUDGET); past it the caller gets ``too_large``."""


def too_long(budget: float) -> TooLarge:
    """The refusal of a read past its budget (either store's)."""
    return TooLarge(f"this read took longer than {budget:g} s: ask for less (a narrower search)")


class SQLStore:
    async def transaction(
        self,
        fn: Callable[Concatenate[Tx, P], Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(tx, *args, **kwargs)`` as one transaction; return its result."""
        raise NotImplementedError

    async def read(
        self,
        fn: Callable[Concatenate[Tx, P], Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn``, which only reads, as one transaction off the path that commits writes.

        Its time is bounded (``read_budget``): past it, ``TooLarge``. By default
        the same as ``transaction``.
        """
        return await self.transaction(fn, *args, **kwargs)

    async def ping(self) -> None:
        await self.transaction(_ping)

    # Users
    async def set_user_name(self, user_id: str, name: str, now_ms: int) -> None:
        await self.transaction(users.set_name, user_id, name, now_ms)

    async def set_last_seen(self, user_id: str, now_ms: int) -> None:
        await self.transaction(users.set_last_seen, user_id, now_ms)

    async def set_last_seen_many(self, seen: list[tuple[str, int]]) -> None:
        await self.transaction(users.set_last_seen_many, seen)

    async def last_seen(self, user_ids: list[str]) -> dict[str, int | None]:
        return await self.read(users.last_seen, user_ids)

    async def contacts(self, user: str, largest: int | None = None) -> list[str]:
        return await self.read(users.contacts, user, largest)

    async def shared_with(self, user: str, others: list[str]) -> list[str]:
        return await self.read(users.shared_with, user, others) if others else []

    # Conversations and membership
    async def get_or_create_direct(
        self, user_a: str, user_b: str, now_ms: int
    ) -> tuple[Conversation, bool]:
        return await self.transaction(conversations.get_or_create_direct, user_a, user_b, now_ms)

    async def create_group(
        self, owner: str, title: str, members: list[str], now_ms: int, kind: str = "group"
    ) -> Conversation:
        return await self.transaction(
            conversations.create_group, kind, owner, title, members, now_ms
        )

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        return await self.read(conversations.load, conversation_id)

    async def member_ids(self, conversation_id: str) -> list[str]:
        return await self.read(conversations.member_ids, conversation_id)

    async def conversation_ids(self, users: list[str]) -> dict[str, list[str]]:
        return await self.read(conversations.conversation_ids, users)

    async def list_conversations(
        self, user: str, limit: int | None = None, after: tuple[int, str] | None = None
    ) -> list[ConversationSummary]:
        return await self.read(conversations.list_conversations, user, limit, after)

    async def rename(self, user: str, cid: str, title: str, now_ms: int) -> list[StreamEvent]:
        return await self.transaction(members.rename, user, cid, title, now_ms)

    async def add_members(
        self, user: str, cid: str, new: list[str], limit: int, now_ms: int
    ) -> list[StreamEvent]:
        return await self.transaction(members.add_members, user, cid, new, limit, now_ms)

    async def remove_member(
        self, user: str, cid: str, target: str, now_ms: int
    ) -> list[StreamEvent]:
        return await self.transaction(members.remove_member, user, cid, target, now_ms)

    async def set_role(
        self, user: str, cid: str, target: str, role: str, now_ms: int
    ) -> list[StreamEvent]:
        return await self.transaction(members.set_role, user, cid, target, role, now_ms)

    async def list_rooms(self, user: str, limit: int, offset: int) -> list[RoomSummary]:
        return await self.read(conversations.list_rooms, user, limit, offset)

    async def join_room(self, user: str, cid: str, limit: int, now_ms: int) -> list[StreamEvent]:
        return await self.transaction(members.join_room, user, cid, limit, now_ms)

    async def set_hidden(self, user: str, cid: str, hidden: bool) -> None:
        await self.transaction(conversations.set_hidden, user, cid, hidden)

    # Blocks
    async def block(self, blocker: str, blocked: str, now_ms: int) -> bool:
        return await self.transaction(blocks.block, blocker, blocked, now_ms)

    async def unblock(self, blocker: str, blocked: str) -> bool:
        return await self.transaction(blocks.unblock, blocker, blocked)

    async def blocked_by(self, user: str) -> list[str]:
        return await self.read(blocks.blocked_by, user)

    async def blockers_of(self, user: str) -> list[str]:
        return await self.read(blocks.blockers_of, user)

    # Messages and the stream
    async def append_messages(
        self, sender: str, items: list[SendItem], now_ms: int, as_server: bool = False
    ) -> list[Appended]:
        return await self.transaction(messages.append, sender, items, now_ms, as_server)

    async def react(
        self, user: str, mid: str, emoji: str, add: bool, now_ms: int
    ) -> tuple[str, int, bool]:
        return await self.transaction(messages.react, user, mid, emoji, add, now_ms)

    async def search(
        self, user: str, text: str, cid: str | None, limit: int, offset: int
    ) -> SearchPage:
        return await self.read(search.search, user, text, cid, limit, offset)

    async def create_upload(
        self, upload_id: str, owner: str, name: str, ctype: str, size: int, now_ms: int
    ) -> Upload:
        return await self.transaction(uploads.create, upload_id, owner, name, ctype, size, now_ms)

    async def get_upload(self, user: str, upload_id: str) -> Upload:
        return await self.read(uploads.get, user, upload_id)

    async def edit_message(self, user: str, mid: str, body: str, now_ms: int) -> StreamEvent:
        return await self.transaction(messages.edit, user, mid, body, now_ms)

    async def delete_message(self, user: str, mid: str, now_ms: int) -> StreamEvent:
        return await self.transaction(messages.delete, user, mid, now_ms)

    async def get_message(self, user: str, mid: str) -> Message:
        return await self.read(messages.get, user, mid)

    async def message_versions(self, user: str, mid: str) -> list[Version]:
        return await self.read(messages.versions, user, mid)

    async def list_messages(
        self,
        user: str,
        conversation_id: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> Page:
        return await self.read(history.list_messages, user, conversation_id, before, after, limit)

    async def replay(self, user: str, cursors: dict[str, int], limit: int) -> list[Replay]:
        return await self.read(history.replay, user, cursors, limit)

    async def events_after(self, cid: str, after: int, limit: int) -> list[StreamEvent]:
        return await self.read(history.events_after, cid, after, limit)

    async def mark(self, user: str, cid: str, kind: str, seq: int) -> Receipt | None:
        return await self.transaction(receipts.mark, user, cid, kind, seq)

    async def unread(self, user: str) -> dict[str, int]:
        return await self.read(receipts.unread, user)

    # Push
    async def register_device(
        self, user: str, provider: str, token: str, platform: str, app_id: str | None, now_ms: int
    ) -> Device:
        return await self.transaction(
            push.register_device, user, provider, token, platform, app_id, now_ms
        )

    async def list_devices(self, user: str) -> list[Device]:
        return await self.read(push.list_devices, user)

    async def delete_device(self, user: str, device_id: str) -> None:
        await self.transaction(push.delete_device, user, device_id)

    async def set_notifications(
        self, user: str, cid: str, level: str, until_ms: int | None
    ) -> Notifications:
        return await self.transaction(push.set_notifications, user, cid, level, until_ms)

    async def get_notifications(self, user: str, cid: str) -> Notifications:
        return await self.read(push.get_notifications, user, cid)

    async def set_dnd(self, user: str, until_ms: int | None, now_ms: int) -> DoNotDisturb:
        return await self.transaction(push.set_dnd, user, until_ms, now_ms)

    async def get_dnd(self, user: str) -> DoNotDisturb:
        return await self.read(push.get_dnd, user)

    async def push_expand(self, now_ms: int, window_ms: int, limit: int) -> int:
        return await self.transaction(push.expand, now_ms, window_ms, limit)

    async def push_claim_due(
        self, now_ms: int, lease: str, lease_ms: int, limit: int
    ) -> list[push.Due]:
        return await self.transaction(push.claim_due, now_ms, lease, lease_ms, limit)

    async def push_settle_due(
        self, lease: str, decisions: list[push.Decision], now_ms: int, window_ms: int
    ) -> int:
        return await self.transaction(push.settle_due, lease, decisions, now_ms, window_ms)

    async def push_claim_sends(
        self, now_ms: int, lease: str, lease_ms: int, limit: int, providers: list[str]
    ) -> list[push.Outgoing]:
        return await self.transaction(push.claim_sends, now_ms, lease, lease_ms, limit, providers)

    async def push_expire_sends(self, before_ms: int, now_ms: int) -> int:
        return await self.transaction(push.expire_sends, before_ms, now_ms)

    async def push_renew_sends(self, lease: str, ids: list[str], until_ms: int) -> list[str]:
        return await self.transaction(push.renew_sends, lease, ids, until_ms)

    async def push_settle_sends(self, lease: str, settled: push.Settled, now_ms: int) -> None:
        await self.transaction(push.settle_sends, lease, settled, now_ms)

    async def push_claim_tickets(self, now_ms: int, lease_ms: int, limit: int) -> list[push.Ticket]:
        return await self.transaction(push.claim_tickets, now_ms, lease_ms, limit)

    async def push_settle_tickets(
        self, done: list[str], gone: list[str], retry: dict[str, int]
    ) -> None:
        await self.transaction(push.settle_tickets, done, gone, retry)

    async def push_backlog(self) -> tuple[int, int | None]:
        return await self.read(push.backlog)


async def _ping(tx: Tx) -> None:
    await tx.value("SELECT 1")
