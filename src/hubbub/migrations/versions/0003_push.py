"""Push notifications: devices, settings, and the outbox.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from hubbub.migrations import apply

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("push_tickets", "push_sends", "push_outbox", "push_events", "push_devices")


def upgrade() -> None:
    apply(revision)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER members_push_count ON members")
        op.execute("DROP FUNCTION members_push_count()")
    else:
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER members_push_{trigger}")
    op.execute("ALTER TABLE conversations DROP COLUMN push_members")
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP INDEX members_push")
    for column in ("push", "push_seq", "notify", "notify_until"):
        op.execute(f"ALTER TABLE members DROP COLUMN {column}")
    op.execute("ALTER TABLE users DROP COLUMN dnd_until")
