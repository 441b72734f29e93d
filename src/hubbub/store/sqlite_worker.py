"""One thread that owns the SQLite connection and commits in groups.

Jobs are plain functions ``fn(connection, *args)``, which can be run again
(as PostgreSQL's retries do). The worker takes every job waiting in its
queue, runs them in one transaction, commits once, and only then resolves
the callers' futures (so nothing is acknowledged before it is durable). A
job refused before it wrote anything leaves the others alone; one that
failed after writing makes the worker roll the group back and run it again
with a SAVEPOINT per job, so that the failing job alone is undone. A failed
COMMIT (or ``before_commit``, the store's last statements of every group)
fails the whole group.

Checkpoints (copying the write-ahead log into the database file, with its
fsync) would otherwise run inside whichever COMMIT crosses SQLite's
threshold, stalling that group's acknowledgements for milliseconds. A second
thread with its own connection runs them instead, after commits, at most
every ``CHECKPOINT_INTERVAL`` seconds; a passive checkpoint never blocks the
writer.

Upkeep the store owes after a group (the full-text index's merging) runs
the same way, off the groups' path, in steps of its own transaction: when
no job is waiting, and, under a load that never lets the queue empty,
between two groups once ``UPKEEP_AT`` units are owed, so that it keeps
pace with what is written. ``before_commit`` says what a group owes (the
store's units: rows it indexed); any group that wrote owes at least one
(an edit or delete changes the index too). ``upkeep(connection, owed)``
does one step and returns what is still owed (0: nothing left to do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hubbub.errors import Unavailable

log = logging.getLogger("hubbub.store")
T = TypeVar("T")
Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]
MAX_GROUP = 256
UPKEEP_AT = 64
"""Upkeep owed (the store's units) that gets a step between two groups when jobs never
stop coming; below it, upkeep waits for a moment with no job."""
CHECKPOINT_INTERVAL = 1.0
# After a checkpoint has emptied it, a longer log file is cut back to this.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# What a database that is locked by another process, out of space or failing
# raises (primary result codes): ``unavailable`` (retry), not ``internal``.
UNUSABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
}


def unusable(exc: BaseException) -> bool:
    """Whether a job failed because of the database's state rather than its own."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in UNUSABLE


class SQLiteWorker:
    def __init__(
        self,
        path: Path,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        before_commit: Callable[[sqlite3.Connection], int] | None = None,
        upkeep: Callable[[sqlite3.Connection, int], int] | None = None,
    ) -> None:
        """``before_commit(connection)``: run in each group's transaction after its jobs
        (if it fails, the group does); returns the upkeep the group owes.
        ``upkeep(connection, owed)``: one step of it; returns what is still owed."""
        self._path = path
        self._before_commit = before_commit or _nothing
        self._upkeep = upkeep
        # Owed upkeep; at start one unit, for whatever an earlier run left.
        self._owed = 0 if upkeep is None else 1
        self._upkeep_held = False  # a step failed: none until the next group commits
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._checkpointer: threading.Thread | None = None
        self._committed = threading.Event()
        self._stopping = threading.Event()
        self.observe: Callable[[float], None] = _ignore
        """Called on the writer thread with each group commit's seconds."""
        self.last_failure: float | None = None
        """``time.monotonic()`` of the last write the database refused (disk full, I/O)."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="hubbub-sqlite", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._open_error is not None:
            raise self._open_error
        self._stopping.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoints, name="hubbub-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    async def stop(self) -> None:
        if self._checkpointer is not None:
            self._stopping.set()
            self._committed.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._thread is None or self._loop is None:
            raise Unavailable("the database is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, args, future))
        return future

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread's job
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        return conn

    def _checkpoints(self) -> None:
        """Checkpoint the log after commits, off the writer's path."""
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            log.exception("no checkpoint connection; the log grows until restart")
            return
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            while not self._stopping.is_set():
                self._committed.wait()
                self._committed.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    log.exception("checkpoint failed; retrying after the next commit")
                self._stopping.wait(CHECKPOINT_INTERVAL)
        finally:
            conn.close()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                if self._owed and not self._upkeep_held:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._upkeep_step(conn)  # nobody is waiting: now is the time
                        continue
                else:
                    job = self._jobs.get()
                if job is None:
                    break
                group = [job]
                stop = False
                while len(group) < MAX_GROUP:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    group.append(more)
                self._run_group(conn, group)
                if stop:
                    break
                if self._owed >= UPKEEP_AT and not self._upkeep_held:
                    self._upkeep_step(conn)  # the queue never empties: keep pace
        finally:
            conn.close()

    def _upkeep_step(self, conn: sqlite3.Connection) -> None:
        assert self._upkeep is not None
        started = time.perf_counter()
        try:
            # Upkeep never waits for another process's lock: a job would wait
            # behind that wait, and then again for its own.
            conn.execute("PRAGMA busy_timeout=0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            finally:
                conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            owed = self._upkeep(conn, self._owed)
            conn.execute("COMMIT")
        except Exception as exc:
            # Upkeep can wait: it is tried again after the next group.
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if unusable(exc) and code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                self.last_failure = time.monotonic()  # a full disk, failing I/O: /health
            log.warning("store upkeep deferred: %s", exc)
            self._upkeep_held = True
            return
        self._committed.set()
        self.observe(time.perf_counter() - started)
        self._owed = owed

    def _run_group(self, conn: sqlite3.Connection, group: list[Job]) -> None:
        started = time.perf_counter()
        changes = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = self._run_jobs(conn, group)
            if outcomes is None:
                # A job failed after it had written: only a savepoint per job
                # can take back its writes and keep the others'.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = self._run_jobs_apart(conn, group)
            owed = self._before_commit(conn)
            conn.execute("COMMIT")
            self._committed.set()
            self.observe(time.perf_counter() - started)
            if self._upkeep is not None and conn.total_changes != changes:
                self._owed += max(owed, 1)
                self._upkeep_held = False
        except Exception as exc:
            # Whatever failed, every caller gets an answer and the thread goes
            # on: a worker that died here would leave all later calls waiting.
            self.last_failure = time.monotonic()
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            failure = Unavailable(f"database error: {exc}")
            outcomes = [(future, None, failure) for _, _, future in group]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_resolve, outcomes)

    def _run_jobs(self, conn: sqlite3.Connection, group: list[Job]) -> list[Outcome] | None:
        """Every job in the one transaction, or ``None`` once one failed after writing.

        No savepoints here: a savepoint makes the full-text index write out
        what it holds in memory, one small segment per job, which made a
        message cost about half as much again. A job that is refused before
        it writes anything (the usual refusal: every check comes first)
        leaves nothing to undo, which ``total_changes`` tells; any other
        failure, and every database error, asks for the careful run.
        """
        outcomes: list[Outcome] = []
        for fn, args, future in group:
            before = conn.total_changes
            try:
                result = fn(conn, *args)
            except sqlite3.Error:
                return None
            except Exception as exc:
                if conn.total_changes != before or not conn.in_transaction:
                    return None
                outcomes.append((future, None, exc))
            else:
                outcomes.append((future, result, None))
        return outcomes

    def _run_jobs_apart(self, conn: sqlite3.Connection, group: list[Job]) -> list[Outcome]:
        """Every job in its own savepoint: a failing one is rolled back alone."""
        outcomes: list[Outcome] = []
        for fn, args, future in group:
            conn.execute("SAVEPOINT job")
            try:
                result = fn(conn, *args)
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                if unusable(exc):
                    log.warning("database error: %s", exc)
                    self.last_failure = time.monotonic()
                    exc = Unavailable(f"database error: {exc}")
                outcomes.append((future, None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((future, result, None))
        return outcomes


def _ignore(*args: object) -> None:
    pass


def _nothing(conn: sqlite3.Connection) -> int:
    return 0


def _resolve(outcomes: list[Outcome]) -> None:
    for future, result, exc in outcomes:
        if future.cancelled():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
