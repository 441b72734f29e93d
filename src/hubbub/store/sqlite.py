"""The embedded default store: one SQLite file, written by one thread.

The SQL lives in ``sqlite_conversations.py`` and ``sqlite_messages.py`` as
plain functions of a connection; this class only hands them to the worker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hubbub import migrations
from hubbub.store import sqlite_conversations, sqlite_messages, sqlite_rows
from hubbub.store.sql import SQLStore
from hubbub.store.sqlite_worker import SQLiteWorker


class SQLiteStore(SQLStore):
    _conversations = sqlite_conversations
    _messages = sqlite_messages
    _rows = sqlite_rows

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._worker = SQLiteWorker(path, synchronous)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await self._worker.call(fn, *args)

    async def open(self, migrate: bool = True) -> None:
        if migrate:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(migrations.upgrade, f"sqlite:///{self.path}")
        await self._worker.start()

    async def close(self) -> None:
        await self._worker.stop()

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())
