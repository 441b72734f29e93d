"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import script

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in script(op.get_bind().dialect.name, revision):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError
