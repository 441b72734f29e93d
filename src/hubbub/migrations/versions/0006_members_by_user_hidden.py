"""The hidden flag in the index of a user's memberships (a list page from the index alone).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import apply

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply(revision)


def downgrade() -> None:
    op.execute("DROP INDEX members_by_user")
    op.execute("CREATE INDEX members_by_user ON members (user_id, conversation_id)")
