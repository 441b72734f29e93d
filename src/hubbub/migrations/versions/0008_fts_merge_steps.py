"""SQLite: the full-text index merged by the writer in small steps, not inside commits.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import apply

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply(revision)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    op.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 4)")
