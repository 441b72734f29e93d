"""The SQLite worker's checkpoints run beside the writer, not inside its commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from hubbub.store.sqlite_worker import SQLiteWorker


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")


def _insert(conn: sqlite3.Connection, n: int) -> int:
    conn.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 1000,) for _ in range(n)])
    return n


def _autocheckpoint(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


async def test_the_log_is_checkpointed_off_the_commit_path(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    worker = SQLiteWorker(path)
    await worker.start()
    try:
        assert await worker.call(_autocheckpoint) == 0  # commits never checkpoint
        await worker.call(_create)
        before = path.stat().st_size
        # About 2 MB in 20 commits: far more than SQLite's own threshold.
        await asyncio.gather(*(worker.call(_insert, 100) for _ in range(20)))
        deadline = asyncio.get_running_loop().time() + 5
        while path.stat().st_size < before + 1_000_000:
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint ran"
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (2000,)


class Refused(Exception):
    pass


def _write(conn: sqlite3.Connection, runs: list[str], name: str, fail: str | None = None) -> str:
    """Insert a row named ``name``; ``fail``: raise before or after writing it."""
    runs.append(name)
    if fail == "before":
        raise Refused(name)
    conn.execute("INSERT INTO t (body) VALUES (?)", (name,))
    if fail == "after":
        raise Refused(name)
    if fail == "constraint":
        conn.execute("INSERT INTO t (id, body) VALUES (1, 'taken')")
    return name


async def _one_group(path: Path, runs: list[str], *jobs: tuple[str, ...]) -> list[object]:
    """Run ``_write`` jobs as one group commit, after a row ``first``.

    They are queued while the writer is held, so it takes them together.
    """
    worker = SQLiteWorker(path)
    await worker.start()
    try:
        await worker.call(_create)
        await worker.call(_write, runs, "first")
        runs.clear()
        held = threading.Event()
        hold = worker.call(lambda conn: held.wait(5))
        await asyncio.sleep(0.05)  # the writer is inside the holding job
        futures = [worker.call(_write, runs, *job) for job in jobs]
        held.set()
        await hold
        return list(await asyncio.gather(*futures, return_exceptions=True))
    finally:
        await worker.stop()


def _bodies(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [body for (body,) in db.execute("SELECT body FROM t ORDER BY id")]


async def test_a_job_refused_before_writing_leaves_its_group_alone(tmp_path: Path) -> None:
    runs: list[str] = []
    results = await _one_group(tmp_path / "w.db", runs, ("a",), ("b", "before"), ("c",))
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], Refused)
    assert runs == ["a", "b", "c"]  # each ran once: nothing had to be undone
    assert _bodies(tmp_path / "w.db") == ["first", "a", "c"]


async def test_a_job_that_fails_after_writing_is_undone_alone(tmp_path: Path) -> None:
    for fail in ("after", "constraint"):
        path = tmp_path / f"{fail}.db"
        runs: list[str] = []
        results = await _one_group(path, runs, ("a",), ("b", fail), ("c",), ("d", "before"))
        assert results[0] == "a" and results[2] == "c", fail
        assert isinstance(results[1], Refused if fail == "after" else sqlite3.IntegrityError)
        assert isinstance(results[3], Refused)
        # The group ran up to the failure, then again with a savepoint per job.
        assert runs == ["a", "b", "a", "b", "c", "d"], fail
        assert _bodies(path) == ["first", "a", "c"], fail
