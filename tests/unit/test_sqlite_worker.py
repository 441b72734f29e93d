"""The SQLite worker's checkpoints run beside the writer, not inside its commits."""

from __future__ import annotations

import asyncio
import sqlite3
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
