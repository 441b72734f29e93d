"""Alembic environment: SQLite synchronously, PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATION_LOCK = 7_160_315  # pg_advisory_lock key: one migrating process at a time


def run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


async def run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.begin() as connection:
        await connection.run_sync(run)
    await engine.dispose()


url = context.config.get_main_option("sqlalchemy.url")
assert url
if url.startswith("postgresql+asyncpg"):
    asyncio.run(run_async(url))
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as connection:
        run(connection)
