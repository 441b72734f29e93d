"""``hubbub migrate`` on both databases, and servers that find the schema ready."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
from alembic import command

from hubbub.migrations import config
from hubbub.store.sqlite import index_pending
from tests.services import fresh_postgres_sync

HEAD = "0008"
CONVERSATION = (
    "INSERT INTO conversations (id, kind, title, created_by, created_at, last_seq, "
    "last_activity_at) VALUES (?, 'group', ?, 'ann', 0, 1, 0)"
)
MESSAGE = (
    "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_msg_id, "
    "created_at) VALUES (?, ?, ?, 'bob', 'text', ?, ?, 0)"
)
"""Rows written by hand into a database of some revision: (id, title) and
(id, conversation, seq, body, client_msg_id)."""


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
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert db.execute("SELECT COUNT(*) FROM messages_fts").fetchone() == (0,)


def test_upgrade_from_0001_keeps_data(tmp_path: Path) -> None:
    """A database of the first release, with messages in it, upgrades in place."""
    url = f"sqlite:///{tmp_path / 'hubbub.db'}"
    command.upgrade(config(url), "0001")
    with sqlite3.connect(tmp_path / "hubbub.db") as db:
        db.execute(CONVERSATION, ("c1", "t"))
        db.execute(
            "INSERT INTO members (conversation_id, user_id, role, joined_at, hidden) "
            "VALUES ('c1', 'ann', 'owner', 0, 1)"
        )
        for seq in (1, 2, 3):
            db.execute(MESSAGE, (f"m{seq}", "c1", seq, "kept", f"k{seq}"))
        db.execute(CONVERSATION, ("c2", "u"))
        db.execute(MESSAGE, ("m4", "c2", 1, "kept", "k4"))
    assert "up to date" in migrate({"HUBBUB_DATA_DIR": str(tmp_path)})
    with sqlite3.connect(tmp_path / "hubbub.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert db.execute("SELECT DISTINCT body FROM messages").fetchall() == [("kept",)]
        # Unread counts read the ordinals and counts written by the upgrade.
        ordinals = db.execute("SELECT id, ordinal FROM messages ORDER BY id").fetchall()
        assert ordinals == [("m1", 1), ("m2", 2), ("m3", 3), ("m4", 1)]
        counts = db.execute("SELECT id, message_count FROM conversations ORDER BY id").fetchall()
        assert counts == [("c1", 3), ("c2", 1)]
        # The conversation list's member counts, counted by the upgrade, kept by triggers.
        members = db.execute("SELECT id, member_count FROM conversations ORDER BY id").fetchall()
        assert members == [("c1", 1), ("c2", 0)]
        db.execute(
            "INSERT INTO members (conversation_id, user_id, role, joined_at) "
            "VALUES ('c2', 'bob', 'member', 0)"
        )
        assert db.execute("SELECT member_count FROM conversations WHERE id = 'c2'").fetchone() == (
            1,
        )
        assert db.execute("SELECT hidden FROM members WHERE user_id = 'ann'").fetchall() == [(1,)]
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT 1 FROM members INDEXED BY members_hidden "
            "WHERE conversation_id = 'c1' AND hidden = 1"
        ).fetchall()
        assert "members_hidden" in str(plan)
        # Messages indexed before the upgrade are found; one stored after it waits
        # for the writer's statement before its commit.
        assert db.execute(FOUND, ("kept",)).fetchone() == (4,)
        db.execute(MESSAGE, ("m5", "c2", 2, "new", "k5"))
        assert db.execute(FOUND, ("new",)).fetchone() == (0,)
        index_pending(db)
        assert db.execute(FOUND, ("new",)).fetchone() == (1,)
        db.execute(INTEGRITY)


FOUND = "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH ?"
INTEGRITY = "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)"
"""Raises unless the full-text index holds exactly the messages' bodies."""


def test_downgrade_from_0007_indexes_what_was_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hubbub.db'}"
    command.upgrade(config(url), "0007")
    with sqlite3.connect(tmp_path / "hubbub.db") as db:
        db.execute(CONVERSATION, ("c1", "t"))
        db.execute(MESSAGE, ("m1", "c1", 1, "waiting", "k1"))
    command.downgrade(config(url), "0006")
    with sqlite3.connect(tmp_path / "hubbub.db") as db:
        assert db.execute(FOUND, ("waiting",)).fetchone() == (1,)
        db.execute(MESSAGE, ("m2", "c1", 2, "direct", "k2"))
        assert db.execute(FOUND, ("direct",)).fetchone() == (1,)  # the old trigger again
        db.execute("UPDATE messages SET body = 'changed' WHERE id = 'm1'")
        db.execute("DELETE FROM messages WHERE id = 'm2'")
        assert [db.execute(FOUND, (w,)).fetchone() for w in ("waiting", "changed", "direct")] == [
            (0,),
            (1,),
            (0,),
        ]
        db.execute(INTEGRITY)


def test_0008_hands_merging_to_the_writer_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hubbub.db'}"
    automerge = "SELECT v FROM messages_fts_config WHERE k = 'automerge'"
    command.upgrade(config(url), "0008")
    with sqlite3.connect(tmp_path / "hubbub.db") as db:
        assert db.execute(automerge).fetchone() == (0,)
    command.downgrade(config(url), "0007")
    with sqlite3.connect(tmp_path / "hubbub.db") as db:
        assert db.execute(automerge).fetchone() == (4,)  # FTS5's own default again
        db.execute(INTEGRITY)


def test_migrate_postgres() -> None:
    with fresh_postgres_sync() as url:
        migrate({"HUBBUB_DATABASE_URL": url})

        async def check() -> list[str]:
            conn = await asyncpg.connect(url)
            try:
                return [r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")]
            finally:
                await conn.close()

        assert asyncio.run(check()) == [HEAD]
