from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hubbub.server import Hubbub
from tests.api.rest import client_of, running


@pytest.fixture
async def hubbub(tmp_path: Path) -> AsyncIterator[Hubbub]:
    async with running(tmp_path) as started:
        yield started


@pytest.fixture
async def rest(hubbub: Hubbub) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(hubbub) as client:
        yield client
