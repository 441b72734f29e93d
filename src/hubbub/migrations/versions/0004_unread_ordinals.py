"""Message ordinals and counts, for unread counts without counting messages.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import apply

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply(revision)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER messages_ordinal ON messages")
        op.execute("DROP FUNCTION messages_ordinal()")
    op.execute("DROP INDEX messages_deleted")
    op.execute("ALTER TABLE conversations DROP COLUMN message_count")
    op.execute("ALTER TABLE messages DROP COLUMN ordinal")
