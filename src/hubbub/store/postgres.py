"""The scale-out store: PostgreSQL through an asyncpg connection pool.

Each method is one transaction on a pooled connection; the SQL lives in
``postgres_conversations.py`` and ``postgres_messages.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from hubbub import migrations
from hubbub.errors import Unavailable
from hubbub.service.models import (
    Conversation,
    ConversationSummary,
    Message,
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
from hubbub.store import postgres_conversations as conversations
from hubbub.store import postgres_messages as messages
from hubbub.store import postgres_rows as rows
from hubbub.store.base import Appended

T = TypeVar("T")


class PostgresStore:
    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def open(self, migrate: bool = True) -> None:
        if migrate:
            await asyncio.to_thread(migrations.upgrade, self.url)
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self.pool_size, command_timeout=30
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        await self._run(lambda conn: conn.fetchval("SELECT 1"))

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._pool is None:
            raise Unavailable("the database is not open")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await fn(conn, *args)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise Unavailable(f"database error: {exc}") from None

    # Users
    async def set_user_name(self, user_id: str, name: str, now_ms: int) -> None:
        await self._run(conversations.set_user_name, user_id, name, now_ms)

    async def set_last_seen(self, user_id: str, now_ms: int) -> None:
        await self._run(conversations.set_last_seen, user_id, now_ms)

    async def last_seen(self, user_ids: list[str]) -> dict[str, int | None]:
        return await self._run(conversations.last_seen, user_ids)

    async def contacts(self, user: str) -> list[str]:
        return await self._run(conversations.contacts, user)

    # Conversations and membership
    async def get_or_create_direct(
        self, user_a: str, user_b: str, now_ms: int
    ) -> tuple[Conversation, bool]:
        return await self._run(conversations.get_or_create_direct, user_a, user_b, now_ms)

    async def create_group(
        self, owner: str, title: str, members: list[str], now_ms: int, kind: str = "group"
    ) -> Conversation:
        return await self._run(conversations.create_group, kind, owner, title, members, now_ms)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        return await self._run(rows.load_conversation, conversation_id)

    async def member_ids(self, conversation_id: str) -> list[str]:
        return await self._run(conversations.member_ids, conversation_id)

    async def list_conversations(self, user: str) -> list[ConversationSummary]:
        return await self._run(conversations.list_conversations, user)

    async def rename(self, user: str, cid: str, title: str, now_ms: int) -> list[StreamEvent]:
        return await self._run(conversations.rename, user, cid, title, now_ms)

    async def add_members(
        self, user: str, cid: str, new: list[str], limit: int, now_ms: int
    ) -> list[StreamEvent]:
        return await self._run(conversations.add_members, user, cid, new, limit, now_ms)

    async def remove_member(
        self, user: str, cid: str, target: str, now_ms: int
    ) -> list[StreamEvent]:
        return await self._run(conversations.remove_member, user, cid, target, now_ms)

    async def set_role(
        self, user: str, cid: str, target: str, role: str, now_ms: int
    ) -> list[StreamEvent]:
        return await self._run(conversations.set_role, user, cid, target, role, now_ms)

    async def list_rooms(self, user: str, limit: int, offset: int) -> list[RoomSummary]:
        return await self._run(conversations.list_rooms, user, limit, offset)

    async def join_room(self, user: str, cid: str, limit: int, now_ms: int) -> list[StreamEvent]:
        return await self._run(conversations.join_room, user, cid, limit, now_ms)

    async def set_hidden(self, user: str, cid: str, hidden: bool) -> None:
        await self._run(conversations.set_hidden, user, cid, hidden)

    # Blocks
    async def block(self, blocker: str, blocked: str, now_ms: int) -> bool:
        return await self._run(conversations.block, blocker, blocked, now_ms)

    async def unblock(self, blocker: str, blocked: str) -> bool:
        return await self._run(conversations.unblock, blocker, blocked)

    async def blocked_by(self, user: str) -> list[str]:
        return await self._run(conversations.blocked_by, user)

    async def blockers_of(self, user: str) -> list[str]:
        return await self._run(conversations.blockers_of, user)

    # Messages and the stream
    async def append_messages(
        self, sender: str, items: list[SendItem], now_ms: int, as_server: bool = False
    ) -> list[Appended]:
        return await self._run(messages.append_messages, sender, items, now_ms, as_server)

    async def react(
        self, user: str, mid: str, emoji: str, add: bool, now_ms: int
    ) -> tuple[str, int] | None:
        return await self._run(messages.react, user, mid, emoji, add, now_ms)

    async def search(
        self, user: str, text: str, cid: str | None, limit: int, offset: int
    ) -> SearchPage:
        return await self._run(messages.search, user, text, cid, limit, offset)

    async def create_upload(
        self, upload_id: str, owner: str, name: str, ctype: str, size: int, now_ms: int
    ) -> Upload:
        return await self._run(messages.create_upload, upload_id, owner, name, ctype, size, now_ms)

    async def get_upload(self, user: str, upload_id: str) -> Upload:
        return await self._run(messages.get_upload, user, upload_id)

    async def edit_message(self, user: str, mid: str, body: str, now_ms: int) -> StreamEvent:
        return await self._run(messages.edit_message, user, mid, body, now_ms)

    async def delete_message(self, user: str, mid: str, now_ms: int) -> StreamEvent:
        return await self._run(messages.delete_message, user, mid, now_ms)

    async def get_message(self, user: str, mid: str) -> Message:
        return await self._run(messages.get_message, user, mid)

    async def message_versions(self, user: str, mid: str) -> list[Version]:
        return await self._run(messages.message_versions, user, mid)

    async def list_messages(
        self,
        user: str,
        conversation_id: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> Page:
        return await self._run(messages.list_messages, user, conversation_id, before, after, limit)

    async def replay(self, user: str, cursors: dict[str, int], limit: int) -> list[Replay]:
        return await self._run(messages.replay, user, cursors, limit)

    async def events_after(self, cid: str, after: int, limit: int) -> list[StreamEvent]:
        return await self._run(messages.events_after, cid, after, limit)

    async def mark(self, user: str, cid: str, kind: str, seq: int) -> Receipt | None:
        return await self._run(messages.mark, user, cid, kind, seq)

    async def unread(self, user: str) -> dict[str, int]:
        return await self._run(messages.unread, user)
