"""A database that is locked, slow or full answers ``unavailable`` (retry), never ``internal``.

Real PostgreSQL (a database of the test's own, locked by another connection)
and real SQLite files.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from hubbub.errors import Unavailable
from hubbub.models import SendItem
from hubbub.store.postgres import PostgresStore
from hubbub.store.sqlite import SQLiteStore
from hubbub.store.tx import Tx
from tests.api.rest import bearer, client_of, error, group, ok, running, send
from tests.services import fresh_postgres

NOW = 1_700_000_000_000


@asynccontextmanager
async def locked(url: str, table: str = "conversations") -> AsyncIterator[asyncpg.Connection]:
    """Another session holding an exclusive lock on ``table`` until the block ends."""
    other = await asyncpg.connect(url)
    try:
        async with other.transaction():
            await other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield other
    finally:
        await other.close()


async def set_database(url: str, setting: str) -> None:
    """A default for every new session of the test's database."""
    conn = await asyncpg.connect(url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{name}" SET {setting}')
    finally:
        await conn.close()


async def unavailable_within(seconds: float, call: Awaitable[object]) -> str:
    started = time.monotonic()
    with pytest.raises(Unavailable) as refused:
        await call
    assert time.monotonic() - started < seconds
    return refused.value.message


@pytest.mark.parametrize(
    "setting", ["lock_timeout = '200ms'", "statement_timeout = '200ms'"], ids=["lock", "statement"]
)
async def test_postgres_timeouts_on_a_locked_table_are_unavailable(setting: str) -> None:
    async with fresh_postgres() as url:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        try:
            made = await store.create_group("pa", "t", ["pb"], NOW)
            await set_database(url, setting)
            # Connections made before the setting do not have it.
            await store.close()
            await store.open(migrate=False)
            async with locked(url):
                await unavailable_within(5, store.get_conversation(made.id))
                item = SendItem(made.id, "during", "k1")
                await unavailable_within(5, store.append_messages("pa", [item], NOW))
            # Nothing was lost, and the same connections serve again.
            (stored,) = await store.append_messages("pa", [SendItem(made.id, "after", "k2")], NOW)
            assert not isinstance(stored, Exception) and stored[0].seq == 1
            page = await store.list_messages("pa", made.id, before=None, after=None, limit=10)
            assert [m.body for m in page.messages] == ["after"]
        finally:
            await store.close()


async def test_postgres_statement_and_pool_timeouts_are_unavailable() -> None:
    async with fresh_postgres() as url:
        store = PostgresStore(url, pool_size=1, timeout=0.5)
        await store.open()
        try:
            made = await store.create_group("qa", "t", ["qb"], NOW)
            async with locked(url):
                # The first waits on the lock for the only connection; the
                # second waits for that connection. Both give up in time.
                first = asyncio.ensure_future(store.rename("qa", made.id, "u", NOW))
                await asyncio.sleep(0.05)
                second = store.rename("qa", made.id, "v", NOW)
                await unavailable_within(2, second)
                await unavailable_within(2, first)
                # A read, on the readers' pool, waits on the lock and gives up in time.
                await unavailable_within(2, store.get_conversation(made.id))
            conversation = await store.get_conversation(made.id)
            assert conversation is not None and conversation.title == "t"
        finally:
            await store.close()


async def test_rest_on_a_locked_postgres_answers_503(tmp_path: Path) -> None:
    async with fresh_postgres() as url:
        async with running(tmp_path, database_url=url) as hubbub, client_of(hubbub) as rest:
            cid = await group(rest, "ra", "rb")
            await send(rest, "ra", cid, "kept")
        await set_database(url, "lock_timeout = '200ms'")
        async with running(tmp_path, database_url=url) as hubbub, client_of(hubbub) as rest:
            async with locked(url, "messages"):
                r = await rest.get(f"/api/v1/conversations/{cid}/messages", headers=bearer("ra"))
                assert error(r) == (503, "unavailable"), r.text
                r = await rest.post(
                    f"/api/v1/conversations/{cid}/messages",
                    headers=bearer("ra"),
                    json={"body": "during", "client_msg_id": "d"},
                )
                assert error(r) == (503, "unavailable"), r.text
            page = ok(await rest.get(f"/api/v1/conversations/{cid}/messages", headers=bearer("ra")))
            assert [m["body"] for m in page["messages"]] == ["kept"]


async def test_sqlite_locked_by_another_process_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    await store.open()
    try:
        made = await store.create_group("sa", "t", ["sb"], NOW)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            # Reads have connections of their own, which the write lock does
            # not stop (WAL); writes wait for it, and give up in time.
            found = await store.get_conversation(made.id)
            assert found is not None and found.title == "t"
            item = SendItem(made.id, "during", "k1")
            await unavailable_within(5, store.append_messages("sa", [item], NOW))
            other.execute("ROLLBACK")
        finally:
            other.close()
        (stored,) = await store.append_messages("sa", [SendItem(made.id, "after", "k2")], NOW)
        assert not isinstance(stored, Exception) and stored[0].seq == 1
    finally:
        await store.close()


async def _page_count(tx: Tx) -> int:
    return int(await tx.value("PRAGMA page_count"))


async def _max_pages(tx: Tx, pages: int) -> None:
    await tx.value(f"PRAGMA max_page_count = {pages}")


async def test_sqlite_out_of_space_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "full.db")
    await store.open()
    try:
        made = await store.create_group("fa", "t", ["fb"], NOW)
        await store.append_messages("fa", [SendItem(made.id, "kept", "k0")], NOW)
        await store.transaction(_max_pages, await store.transaction(_page_count))
        big = [SendItem(made.id, f"{i} " + "x" * 3000, f"k{i}") for i in range(1, 40)]
        await unavailable_within(5, store.append_messages("fa", big, NOW))
        await store.transaction(_max_pages, 1 << 30)
        (stored,) = await store.append_messages("fa", [SendItem(made.id, "after", "k-after")], NOW)
        assert not isinstance(stored, Exception), stored
        page = await store.list_messages("fa", made.id, before=None, after=None, limit=10)
        assert [m.body for m in page.messages] == ["kept", "after"]
    finally:
        await store.close()
