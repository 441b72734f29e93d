"""The initial schema.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in script(op.get_bind().dialect.name, revision):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the initial schema is not downgraded; restore a backup")
