from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Client, RawClient, ServerProcess


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every client a test opened, so no socket outlives its test."""
    yield
    while Client.opened:
        await Client.opened.pop().ws.close()
    while RawClient.opened:
        await RawClient.opened.pop().close()
    gc.collect()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real hubbub process shared by the tests of one module."""
    proc = ServerProcess(tmp_path_factory.mktemp("hubbub")).start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A hubbub process of the test's own (for tests that kill or reconfigure it)."""
    proc = ServerProcess(tmp_path / "server")
    yield proc
    proc.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
