"""Store implementations the contract suite runs against."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hubbub.store.base import Store
from hubbub.store.postgres import PostgresStore
from hubbub.store.sqlite import SQLiteStore
from tests.services import fresh_postgres

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Makes stores over one fresh database, so a test can reopen what it wrote."""
    if request.param == "sqlite":
        yield lambda: SQLiteStore(tmp_path / "contract.db")
        return
    async with fresh_postgres() as url:
        yield lambda: PostgresStore(url, pool_size=4)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[Store]:
    s = store_factory()
    await s.open()
    yield s
    await s.close()
