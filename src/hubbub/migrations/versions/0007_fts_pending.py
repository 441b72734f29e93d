"""SQLite: new messages' full-text entries written once per transaction, not per insert.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import apply

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply(revision)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    op.execute(
        "INSERT INTO messages_fts (rowid, body) SELECT m.rowid, m.body "
        "FROM messages_fts_pending p JOIN messages m ON m.rowid = p.message_rowid"
    )
    for name in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER messages_fts_{name}")
    op.execute("DROP TABLE messages_fts_pending")
    op.execute(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts (messages_fts, rowid, body) "
        "VALUES ('delete', old.rowid, old.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
        "INSERT INTO messages_fts (messages_fts, rowid, body) "
        "VALUES ('delete', old.rowid, old.body); "
        "INSERT INTO messages_fts (rowid, body) VALUES (new.rowid, new.body); END"
    )
