"""Store implementations the contract suite runs against."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hubbub.store.base import Store
from hubbub.store.sqlite import SQLiteStore

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes stores over one database, so a test can reopen what it wrote."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "contract.db")
    raise AssertionError(request.param)  # pragma: no cover


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[Store]:
    s = store_factory()
    await s.open()
    yield s
    await s.close()
