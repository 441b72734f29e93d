"""Member counts, for a conversation list that lists only the first members of a large group.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import apply

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply(revision)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER members_count ON members")
        op.execute("DROP FUNCTION members_count()")
    else:
        op.execute("DROP TRIGGER members_count_insert")
        op.execute("DROP TRIGGER members_count_delete")
    op.execute("DROP INDEX members_by_join")
    op.execute("ALTER TABLE conversations DROP COLUMN member_count")
