"""The initial schema.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from hubbub.migrations import apply

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply(revision)


def downgrade() -> None:
    raise NotImplementedError("the initial schema is not downgraded; restore a backup")
