from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.clock import ManualClock
from hubbub.config import Settings
from hubbub.limits.settings import Quotas
from hubbub.push.settings import PushSettings
from hubbub.server import Hubbub
from tests.support import NO_PUSH_SERVICE, SECRET, ServerProcess, close_opened, free_port


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Close every client a test opened before its fixtures are torn down.

    So no socket outlives its test, and no server fixture stops with clients
    still connected (it would wait out its close grace for each of them).
    """
    try:
        close_opened()
    finally:
        result = yield
    return result


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect what the test left, so a leaked resource warns during its own test."""
    yield
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


class InProcess:
    def __init__(self, app: Hubbub, clock: ManualClock, port: int) -> None:
        self.app, self.clock, self.port = app, clock, port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"

    async def sweep(self, seconds: float = 0.0) -> None:
        """Move the clock, run the periodic sweeps, let their announcements go out."""
        self.clock.advance(seconds)
        self.app.gateway.sweep()
        self.app.presence.sweep()
        await self.app.presence.drain()
        await asyncio.sleep(0.02)


@asynccontextmanager
async def serve_in_process(tmp_path: Path, **settings: Any) -> AsyncIterator[InProcess]:
    """A hubbub served on the running loop, on a clock the caller moves by hand."""
    clock = ManualClock(start=time.time())
    port = free_port()
    values: dict[str, Any] = {
        "port": port,
        "data_dir": tmp_path,
        "jwt_secret": SECRET,
        "heartbeat_interval": 30,
        "heartbeat_timeout": 10,
        "log_level": "warning",
        "quotas": Quotas.off(),
        "push": PushSettings(expo_url=NO_PUSH_SERVICE),
        **settings,
    }
    app = Hubbub(Settings(**values), clock)
    server = app.uvicorn_server()
    await app.start()
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield InProcess(app, clock, port)
    finally:
        server.should_exit = True
        await task
        await app.stop()


@pytest.fixture
async def in_process(tmp_path: Path) -> AsyncIterator[InProcess]:
    """A hubbub served on this test's loop, on a clock the test moves by hand."""
    async with serve_in_process(tmp_path) as served:
        yield served
