"""Reads on threads and connections of their own, beside the one writer.

In WAL mode a reader sees the database as of the last commit before its
transaction began and never blocks the writer, nor the writer it: a long
search or a large conversation list runs here while sends commit on the
writer thread (``sqlite_worker.py``). Each read runs as one read transaction
(one snapshot for all its statements) within a time budget: a progress
handler aborts it when the budget is spent, or when its caller has gone (the
request was cancelled), so a reader thread is never held by a read nobody
waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hubbub.errors import Unavailable
from hubbub.store.sql import too_long
from hubbub.store.sqlite_worker import unusable

T = TypeVar("T")
READERS = 2
"""Reader threads (each with its connection)."""
PROGRESS_STEPS = 10_000
"""SQLite virtual machine steps between two looks at the budget (microseconds' worth)."""


QUEUE_WAIT = 30.0
"""Seconds a read may wait for a reader thread before it is ``unavailable`` (not counted
in its budget: a read is not too large because others are reading)."""


class _Read:
    __slots__ = ("abandoned", "deadline", "queued")

    def __init__(self) -> None:
        self.queued = time.monotonic()
        self.deadline = float("inf")
        self.abandoned = False

    def over(self) -> int:
        """For SQLite's progress handler: nonzero aborts the statement."""
        return int(self.abandoned or time.monotonic() > self.deadline)


class SQLiteReaders:
    def __init__(
        self,
        path: Path,
        run: Callable[[sqlite3.Connection, Any, tuple[Any, ...], dict[str, Any]], Any],
        size: int = READERS,
        budget: float = 5.0,
        busy_timeout: float = 5.0,
    ) -> None:
        """``run(connection, fn, args, kwargs)`` runs one read function on a connection."""
        self.path = path
        self.budget = budget
        self._run = run
        self._size = size
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._size, thread_name_prefix="hubbub-sqlite-read")

    async def stop(self) -> None:
        pool, self._pool = self._pool, None  # new reads are refused from now on
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()

    async def call(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        if self._pool is None:
            raise Unavailable("the database is not open")
        read = _Read()
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, self._read, read, fn, args, kwargs
        )
        try:
            result: T = await future
        except asyncio.CancelledError:
            read.abandoned = True  # the statement under way stops at its next look
            raise
        return result

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # mode=rw: a database file that went away is an error, not a new empty file.
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute("PRAGMA query_only=ON")
                conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _read(
        self,
        read: _Read,
        fn: Callable[..., Coroutine[Any, Any, T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        now = time.monotonic()
        if read.abandoned:
            raise Unavailable("the read was cancelled")
        if now - read.queued > QUEUE_WAIT:
            raise Unavailable("every reader was busy; retry")
        read.deadline = now + self.budget  # the budget counts from here
        try:
            conn = self._connection()
        except sqlite3.Error as exc:
            raise Unavailable(f"database error: {exc}") from None
        conn.set_progress_handler(read.over, PROGRESS_STEPS)
        try:
            conn.execute("BEGIN")  # one snapshot for every statement of the read
            try:
                result: T = self._run(conn, fn, args, kwargs)
            finally:
                self._end(conn)
        except sqlite3.OperationalError as exc:
            if read.over():
                raise too_long(self.budget) from None
            if unusable(exc):
                raise Unavailable(f"database error: {exc}") from None
            raise
        except sqlite3.Error as exc:
            if unusable(exc):
                raise Unavailable(f"database error: {exc}") from None
            raise
        finally:
            conn.set_progress_handler(None, 0)
        return result

    def _end(self, conn: sqlite3.Connection) -> None:
        """End the read transaction; a connection that cannot is dropped (a new one next time)."""
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")  # a read-only transaction: nothing to keep
        except sqlite3.Error:
            self._local.conn = None
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            raise
