"""The embedded default store: one SQLite file, written by one thread.

The store's functions are coroutines written once for both databases
(``tx.Tx``). Here none of them ever suspends: every ``await`` on a
``SQLiteTx`` runs its statement at once and returns. So the worker thread
runs a whole transaction function to its end in one step (``complete``),
inside the group commit and per-job savepoint of ``sqlite_worker.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from hubbub import migrations
from hubbub.store.sql import SQLStore
from hubbub.store.sqlite_worker import SQLiteWorker
from hubbub.store.tx import SQLITE, Dialect, Row, Tx

P = ParamSpec("P")
T = TypeVar("T")


class SQLiteTx:
    """``Tx`` over the worker's connection; its methods never suspend."""

    __slots__ = ("_conn",)
    dialect: Dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def one(self, sql: str, *args: object) -> Row | None:
        row: Row | None = self._conn.execute(sql, args).fetchone()
        return row

    async def all(self, sql: str, *args: object) -> list[Row]:
        return self._conn.execute(sql, args).fetchall()

    async def value(self, sql: str, *args: object) -> Any:
        row = self._conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    async def run(self, sql: str, *args: object) -> int:
        return self._conn.execute(sql, args).rowcount

    async def many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._conn.executemany(sql, rows)


def complete(awaitable: Awaitable[T]) -> T:
    """The result of an awaitable that never suspends, computed here and now."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    steps.close()
    raise RuntimeError("a SQLite transaction awaited something other than its database")


def _job(
    conn: sqlite3.Connection,
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    return complete(fn(SQLiteTx(conn), *args, **kwargs))


class SQLiteStore(SQLStore):
    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._worker = SQLiteWorker(path, synchronous)

    async def transaction(
        self, fn: Callable[Concatenate[Tx, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self._worker.call(_job, fn, args, kwargs)

    async def open(self, migrate: bool = True) -> None:
        if migrate:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(migrations.upgrade, f"sqlite:///{self.path}")
        await self._worker.start()

    async def close(self) -> None:
        await self._worker.stop()
