"""The machine's PostgreSQL and Redis for tests: fresh databases, clear skips.

On a machine without them these tests skip with the reason; where
``HUBBUB_REQUIRE_SERVICES=1`` (CI), a missing service fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "HUBBUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HUBBUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRED = os.environ.get("HUBBUB_REQUIRE_SERVICES") == "1"


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def need(url: str, default_port: int, what: str) -> None:
    if reachable(url, default_port):
        return
    message = f"{what} is not reachable at {url}"
    if REQUIRED:
        pytest.fail(f"{message} (HUBBUB_REQUIRE_SERVICES=1)")
    pytest.skip(f"{message}; set HUBBUB_TEST_POSTGRES_URL / HUBBUB_TEST_REDIS_URL")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{name}").geturl()


async def _create_database() -> str:
    import asyncpg

    need(POSTGRES_ADMIN_URL, 5432, "PostgreSQL")
    name = f"hubbub_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def _drop_database(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    """A new, empty database for one test; dropped afterwards."""
    name = await _create_database()
    try:
        yield with_database(POSTGRES_ADMIN_URL, name)
    finally:
        await _drop_database(name)


@contextmanager
def fresh_postgres_sync() -> Iterator[str]:
    """``fresh_postgres`` for synchronous fixtures (server processes)."""
    name = asyncio.run(_create_database())
    try:
        yield with_database(POSTGRES_ADMIN_URL, name)
    finally:
        asyncio.run(_drop_database(name))
