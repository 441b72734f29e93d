"""The scale-out store: PostgreSQL through an asyncpg connection pool.

Each method is one transaction on a pooled connection; the SQL lives in
``postgres_conversations.py`` and ``postgres_messages.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import asyncpg

from hubbub import migrations
from hubbub.errors import Unavailable
from hubbub.store import postgres_conversations, postgres_messages, postgres_rows
from hubbub.store.sql import SQLStore

T = TypeVar("T")


class PostgresStore(SQLStore):
    _conversations = postgres_conversations
    _messages = postgres_messages
    _rows = postgres_rows

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

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._pool is None:
            raise Unavailable("the database is not open")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await fn(conn, *args)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise Unavailable(f"database error: {exc}") from None
