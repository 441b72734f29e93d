"""Schema migrations (Alembic), for SQLite and PostgreSQL alike.

``upgrade(url)`` brings a database to the newest schema; ``hubbub migrate``
and server start-up call it. Each revision carries one SQL script per
database (``<dialect>_<revision>.sql``), since full-text search differs.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).parent


def sqlalchemy_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest revision (blocking)."""
    command.upgrade(config(url), "head")


def apply(revision: str) -> None:
    """Run a revision's script for the database Alembic is migrating."""
    from alembic import op

    for statement in script(op.get_bind().dialect.name, revision):
        op.execute(statement)


def script(dialect: str, revision: str) -> list[str]:
    """The statements of one revision's script for one database."""
    text = resources.files("hubbub.migrations").joinpath(f"{dialect}_{revision}.sql").read_text()
    statements, current = [], ""
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if _complete(dialect, current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def _complete(dialect: str, text: str) -> bool:
    """Whether ``text`` ends a statement of the script.

    SQLite's own test knows the BEGIN ... END of its triggers. PostgreSQL's
    scripts end each statement with a line ending in ``;``, outside a
    function body quoted in ``$$``.
    """
    if dialect == "sqlite":
        return sqlite3.complete_statement(text)
    return text.rstrip().endswith(";") and text.count("$$") % 2 == 0
