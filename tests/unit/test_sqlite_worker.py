"""The SQLite worker: checkpoints and upkeep beside the writer, not inside its commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from hubbub.errors import Unavailable
from hubbub.store import sqlite_worker
from hubbub.store.sqlite_worker import SQLiteWorker
from tests.support import until


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


class Upkeep:
    """A store's upkeep: each group owes ``work`` units; a step pays ``per_step`` of them."""

    def __init__(self, work: int = 3, per_step: int = 1, fail: bool = False) -> None:
        self.work, self.per_step, self.fail = work, per_step, fail
        self.done: list[int] = []  # the jobs run so far (see test_upkeep_keeps_pace...)
        self.steps: list[tuple[int, int, bool]] = []  # (owed, jobs done, in a transaction)

    def before_commit(self, conn: sqlite3.Connection) -> int:
        return self.work

    def step(self, conn: sqlite3.Connection, owed: int) -> int:
        self.steps.append((owed, len(self.done), conn.in_transaction))
        if self.fail:
            failure = sqlite3.OperationalError("disk I/O error")
            failure.sqlite_errorcode = sqlite3.SQLITE_IOERR  # as SQLite's own carry it
            raise failure
        conn.execute("INSERT INTO t (body) VALUES ('upkeep')")  # committed on its own
        return max(owed - self.per_step, 0)

    def job(self, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (body) VALUES ('job')")
        self.done.append(1)


def _worker(path: Path, upkeep: Upkeep, busy_timeout: float = 5.0) -> SQLiteWorker:
    with sqlite3.connect(path) as db:  # the steps' table, there from the start
        db.execute("PRAGMA journal_mode=WAL")
        _create(db)
    return SQLiteWorker(
        path, busy_timeout=busy_timeout, before_commit=upkeep.before_commit, upkeep=upkeep.step
    )


async def test_upkeep_runs_in_steps_of_its_own_when_nothing_waits(tmp_path: Path) -> None:
    upkeep = Upkeep(work=3)
    worker = _worker(tmp_path / "w.db", upkeep)
    await worker.start()
    try:
        await until(lambda: len(upkeep.steps) == 1)  # at start: what an earlier run left
        await worker.call(_insert, 1)  # a group that wrote: it owes 3
        await until(lambda: len(upkeep.steps) == 4)
        await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    # One step each, in a transaction of its own; once nothing is owed the writer
    # waits for jobs instead of spinning.
    assert [owed for owed, _, _ in upkeep.steps] == [1, 3, 2, 1]
    assert all(in_tx for _, _, in_tx in upkeep.steps)
    assert _bodies(tmp_path / "w.db") == ["upkeep", "x" * 1000] + ["upkeep"] * 3


async def test_a_group_that_wrote_nothing_owes_nothing(tmp_path: Path) -> None:
    upkeep = Upkeep(work=0)
    worker = _worker(tmp_path / "w.db", upkeep)
    await worker.start()
    try:
        await until(lambda: len(upkeep.steps) == 1)  # at start
        assert await worker.call(_autocheckpoint) == 0  # reads only
        await asyncio.sleep(0.05)
        assert len(upkeep.steps) == 1
        await worker.call(_insert, 1)  # writes: at least one unit, whatever the store says
        await until(lambda: len(upkeep.steps) == 2)
        await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    assert [owed for owed, _, _ in upkeep.steps] == [1, 1]


async def test_upkeep_keeps_pace_when_the_queue_never_empties(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_worker, "MAX_GROUP", 1)  # a group per job
    at = sqlite_worker.UPKEEP_AT
    upkeep = Upkeep(work=at // 2, per_step=at)  # every second group owes a step
    worker = _worker(tmp_path / "w.db", upkeep)
    await worker.start()
    try:
        held = threading.Event()
        hold = worker.call(lambda conn: held.wait(5))
        await asyncio.sleep(0.05)  # the writer is inside the holding job
        jobs = 40
        futures = [worker.call(upkeep.job) for _ in range(jobs)]
        before = len(upkeep.steps)
        held.set()
        await hold
        await asyncio.gather(*futures)
    finally:
        await worker.stop()
    # While the 40 waited (the queue never empty): a step whenever UPKEEP_AT was owed.
    during = [done for _, done, _ in upkeep.steps[before:] if 0 < done < jobs]
    assert jobs // 2 - 2 <= len(during) <= jobs // 2, upkeep.steps


async def test_failed_upkeep_is_deferred_to_the_next_group(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    upkeep = Upkeep(fail=True)
    worker = _worker(tmp_path / "w.db", upkeep)
    await worker.start()
    try:
        assert await worker.call(_insert, 2) == 2
        await asyncio.sleep(0.05)
        assert worker.last_failure is not None  # an I/O error: /health says so
    finally:
        await worker.stop()
    assert "store upkeep deferred: disk I/O error" in caplog.text
    # At most one failed step per group that wrote (and one at start), not a loop of retries.
    assert 1 <= len(upkeep.steps) <= 3, upkeep.steps
    assert _bodies(tmp_path / "w.db") == ["x" * 1000] * 2


async def test_upkeep_never_waits_for_another_process_lock(tmp_path: Path) -> None:
    """Another connection holds the write lock: a step gives up at once instead of
    waiting out the busy timeout, so a job behind it waits once, not twice."""
    path = tmp_path / "w.db"
    upkeep = Upkeep(work=1)
    worker = _worker(path, upkeep, busy_timeout=1.0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # held: nobody else can write
    loop = asyncio.get_running_loop()
    await worker.start()  # its first step (for an earlier run) finds the lock taken
    try:
        await asyncio.sleep(0.1)
        started = loop.time()
        with pytest.raises(Unavailable):
            await worker.call(_insert, 1)
        assert loop.time() - started < 1.6  # its own 1 s, not the step's as well
        other.execute("ROLLBACK")
        assert await worker.call(_insert, 1) == 1
        await until(lambda: len(upkeep.steps) >= 1)  # deferred, then run after a group
    finally:
        other.close()
        await worker.stop()
    assert upkeep.steps[0][0] == 2  # the one owed at start and the group's
