"""The embedded default store: one SQLite file, written by one thread.

The store's functions are coroutines written once for both databases
(``tx.Tx``). Here none of them ever suspends: every ``await`` on a
``SQLiteTx`` runs its statement at once and returns. So the worker thread
runs a whole transaction function to its end in one step (``complete``),
inside the group commit and per-job savepoint of ``sqlite_worker.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from hubbub import migrations
from hubbub.errors import Unavailable
from hubbub.store.sql import READ_BUDGET, SQLStore
from hubbub.store.sqlite_readers import SQLiteReaders
from hubbub.store.sqlite_worker import SQLiteWorker
from hubbub.store.tx import SQLITE, Dialect, Row, Tx

MIN_FREE_BYTES = 1024 * 1024
FAILURE_MEMORY = 10.0
MERGE_PAGES = 16
"""Leaf pages of the full-text index a merge step writes at least (about half a
millisecond on a store of 10M messages)."""
MERGE_PAGES_MAX = 64
"""The most a step writes (the step a send may wait behind, under load)."""
MESSAGES_PER_PAGE = 4
"""Messages indexed for which one page of merging is owed: four times what kept a
store of 12-word messages in groups of 256 free of FTS5's crisis merges."""
INDEX_SEGMENTS = "SELECT COUNT(DISTINCT id >> 37) FROM messages_fts_data WHERE id >= 1 << 37"
"""The full-text index's segments (FTS5 numbers the pages of segment N from ``N << 37``):
what a search reads through, and what ``merge_index`` keeps few."""

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


def complete(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends, computed here and now."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a SQLite transaction awaited something other than its database")


def index_pending(conn: sqlite3.Connection) -> int:
    """Write the transaction's new messages into the full-text index: one statement.

    Run by the writer before each commit. Inserting messages only queues
    them (sqlite_0007.sql): an insert into FTS5 from the message's own
    statement made it write its pending terms at that statement's savepoint,
    a segment per message; here a group's messages make one segment. Edits
    and deletes of a message still pending leave it to this statement.
    Returns the messages it indexed: the merging ``merge_index`` then owes.
    """
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM messages_fts_pending)").fetchone()[0]:
        return 0
    indexed = conn.execute(
        "INSERT INTO messages_fts (rowid, body) SELECT m.rowid, m.body "
        "FROM messages_fts_pending p JOIN messages m ON m.rowid = p.message_rowid"
    ).rowcount
    conn.execute("DELETE FROM messages_fts_pending")
    return max(indexed, 1)


def merge_index(conn: sqlite3.Connection, owed: int) -> int:
    """One step of the full-text index's merging, for ``owed`` messages indexed; what is
    still owed afterwards (0 once there is nothing left to merge).

    Each group adds a segment to the index, and a search reads every
    segment, so segments must be merged as they come. FTS5 would do it
    itself inside whichever commit crossed its work unit (64 leaf pages
    written): on a store of 10M messages every 64th one-message commit took
    15-20 ms, and the sends in that group and behind it waited.
    sqlite_0008.sql turns that off; the writer runs these steps in
    transactions of their own, when no send is waiting or between groups
    under load (``sqlite_worker.py``). A step merges ``owed /
    MESSAGES_PER_PAGE`` leaf pages (at least ``MERGE_PAGES``, at most
    ``MERGE_PAGES_MAX``), in levels of at least four segments (FTS5's
    ``usermerge``), as the automatic merging did; it never does more than
    there is to merge, so owing generously costs only empty steps. FTS5
    says a step did work when it changed two rows or more; one that did
    none means the index is merged.
    """
    pages = min(max(owed // MESSAGES_PER_PAGE, MERGE_PAGES), MERGE_PAGES_MAX)
    before = conn.total_changes
    conn.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?)", (pages,))
    if conn.total_changes - before < 2:
        return 0
    return max(owed - pages * MESSAGES_PER_PAGE, 1)  # until a step finds nothing to do


def _job(
    conn: sqlite3.Connection,
    fn: Callable[..., Coroutine[Any, Any, T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    return complete(fn(SQLiteTx(conn), *args, **kwargs))


class SQLiteStore(SQLStore):
    def __init__(
        self,
        path: Path,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        read_budget: float = READ_BUDGET,
    ) -> None:
        self.path = path
        self._worker = SQLiteWorker(
            path, synchronous, busy_timeout, before_commit=index_pending, upkeep=merge_index
        )
        self._readers = SQLiteReaders(path, _job, budget=read_budget)

    def observe_commits(self, observe: Callable[[float], None]) -> None:
        """Report each group commit's seconds (called on the writer thread)."""
        self._worker.observe = observe

    async def transaction(
        self,
        fn: Callable[Concatenate[Tx, P], Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        return await self._worker.call(_job, fn, args, kwargs)

    async def read(
        self,
        fn: Callable[Concatenate[Tx, P], Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """On a reader thread (``sqlite_readers.py``): never in the writer's way."""
        return await self._readers.call(fn, args, kwargs)

    async def open(self, migrate: bool = True) -> None:
        if migrate:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(migrations.upgrade, f"sqlite:///{self.path}")
        await self._worker.start()  # creates the file, in WAL mode, before any reader
        self._readers.start()

    async def close(self) -> None:
        await self._readers.stop()
        await self._worker.stop()

    async def ping(self) -> None:
        """Raise when the database does not answer or cannot take writes now.

        Writes fail on a full disk while reads still work, so a read alone
        would call it healthy: it is not when its disk has less than
        ``MIN_FREE_BYTES`` left, or a write was refused in the last
        ``FAILURE_MEMORY`` seconds. Both clear by themselves once space is back.
        """
        await super().ping()
        failed = self._worker.last_failure
        if failed is not None and time.monotonic() - failed < FAILURE_MEMORY:
            raise Unavailable("the database refused a write in the last few seconds")
        free = (await asyncio.to_thread(shutil.disk_usage, self.path.parent)).free
        if free < MIN_FREE_BYTES:
            raise Unavailable(f"only {free} bytes left on the database's disk")
