"""An index of the members who hid a conversation.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import apply

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply(revision)


def downgrade() -> None:
    op.execute("DROP INDEX members_hidden")
