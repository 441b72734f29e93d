"""``hubbub migrate`` on both databases, and servers that find the schema ready."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.services import fresh_postgres_sync


def migrate(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hubbub", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_migrate_sqlite_twice(tmp_path: Path) -> None:
    assert "up to date" in migrate({"HUBBUB_DATA_DIR": str(tmp_path)})
    assert "up to date" in migrate({"HUBBUB_DATA_DIR": str(tmp_path)})
    with sqlite3.connect(tmp_path / "hubbub.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        assert db.execute("SELECT COUNT(*) FROM messages_fts").fetchone() == (0,)


def test_migrate_postgres() -> None:
    with fresh_postgres_sync() as url:
        migrate({"HUBBUB_DATABASE_URL": url})

        async def check() -> list[str]:
            conn = await asyncpg.connect(url)
            try:
                return [r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")]
            finally:
                await conn.close()

        assert asyncio.run(check()) == ["0001"]
