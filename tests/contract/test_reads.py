"""Reads off the path that commits writes: in their own threads or pool, within a budget.

A read that takes long (here one that counts for seconds) must not hold up
sends; past the read budget it ends with ``too_large``; a read whose caller
is cancelled frees its thread or connection at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hubbub.errors import TooLarge
from hubbub.models import SendItem
from hubbub.store.postgres import PostgresStore
from hubbub.store.sqlite import SQLiteStore
from hubbub.store.tx import Tx
from tests.services import fresh_postgres

NOW = 1_700_000_000_000
SLOW = 600.0
"""Seconds the slow read would take if nothing stopped it."""

Opened = SQLiteStore | PostgresStore
Factory = Callable[[float], Opened]


async def _slow(tx: Tx) -> int:
    """A read that runs for minutes unless stopped."""
    if tx.dialect.name == "postgresql":
        return int(await tx.value(f"SELECT 1 FROM pg_sleep({SLOW})") or 0)
    return int(
        await tx.value(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 10000000000) SELECT count(*) FROM c"
        )
    )


async def _quick(tx: Tx) -> int:
    return int(await tx.value("SELECT 1"))


@pytest.fixture(params=["sqlite", "postgres"])
async def factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Makes an open store over one fresh database, with the given read budget."""
    made: list[Opened] = []
    if request.param == "sqlite":

        def sqlite(budget: float) -> Opened:
            store = SQLiteStore(tmp_path / "reads.db", read_budget=budget)
            made.append(store)
            return store

        yield sqlite
    else:
        async with fresh_postgres() as url:

            def postgres(budget: float) -> Opened:
                store = PostgresStore(url, pool_size=2, read_pool_size=1, read_budget=budget)
                made.append(store)
                return store

            yield postgres
    for store in made:
        await store.close()


async def test_a_long_read_does_not_hold_up_sends(factory: Factory) -> None:
    store = factory(SLOW)
    await store.open()
    group = await store.create_group("ann", "g", ["bob"], NOW)
    slow = asyncio.ensure_future(store.read(_slow))
    await asyncio.sleep(0.2)  # under way
    for n in range(20):
        (stored,) = await store.append_messages("ann", [SendItem(group.id, f"m{n}", f"k{n}")], NOW)
        assert not isinstance(stored, Exception), stored
    assert not slow.done()  # every send committed while the read was still running
    slow.cancel()
    page = await asyncio.wait_for(
        store.list_messages("ann", group.id, before=None, after=None, limit=50), 10
    )
    assert len(page.messages) == 20  # and reads see every committed send


async def test_a_read_past_its_budget_is_too_large_and_frees_its_reader(factory: Factory) -> None:
    store = factory(0.3)
    await store.open()
    with pytest.raises(TooLarge, match=r"longer than 0\.3 s"):
        await asyncio.wait_for(store.read(_slow), 30)
    # PostgreSQL here has one reader connection, SQLite two threads: both free again.
    assert await asyncio.wait_for(store.read(_quick), 10) == 1
    assert await asyncio.wait_for(store.read(_quick), 10) == 1


async def test_a_cancelled_read_frees_its_reader(factory: Factory) -> None:
    store = factory(SLOW)
    await store.open()
    for _ in range(3):  # more than there are readers: each one freed in turn
        slow = asyncio.ensure_future(store.read(_slow))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
    assert await asyncio.wait_for(store.read(_quick), 10) == 1
