"""What the SQL modules are written against: a transaction and a dialect.

Every function in ``store/`` takes a ``Tx`` first and is written once, with
``?`` placeholders, for both databases. The ``Dialect`` carries the few places
where SQLite and PostgreSQL really differ. ``sqlite.py`` and ``postgres.py``
implement ``Tx`` (the SQLite one never suspends, so its transactions run to
the end on the writer thread; see ``sqlite.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

Row: TypeAlias = Sequence[Any]


class Tx(Protocol):
    """One open transaction. ``sql`` uses ``?`` (or ``?N`` to reuse an argument)."""

    dialect: Dialect

    async def one(self, sql: str, *args: object) -> Row | None:
        """The first row, or None."""

    async def all(self, sql: str, *args: object) -> list[Row]: ...

    async def value(self, sql: str, *args: object) -> Any:
        """The first column of the first row, or None when there is no row."""

    async def run(self, sql: str, *args: object) -> int:
        """Execute; the number of rows written."""

    async def many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Execute once per argument tuple."""


@dataclass(frozen=True, slots=True)
class Dialect:
    name: Literal["sqlite", "postgresql"]
    greatest: str
    """The scalar maximum of its arguments."""
    locks_rows: bool
    """Whether concurrent writers exist and serialise on row locks.

    SQLite has one writer (the worker thread), so nothing needs locking;
    PostgreSQL writers in any process lock the conversation row first.
    """

    def lock(self, of: str | None = None, *, no_key: bool = False) -> str:
        """Appended to a SELECT whose rows must stay locked until commit.

        ``of``: lock only that table's rows (needed beside outer joins);
        ``no_key``: a lock that does not block writers referencing the row's key.
        """
        if not self.locks_rows:
            return ""
        return f" FOR {'NO KEY ' if no_key else ''}UPDATE{f' OF {of}' if of else ''}"

    def skip_locked(self) -> str:
        """Appended to a SELECT that claims rows no other writer holds (queues)."""
        return " FOR UPDATE SKIP LOCKED" if self.locks_rows else ""

    @property
    def least(self) -> str:
        """The scalar minimum of its arguments."""
        return "MIN" if self.name == "sqlite" else "LEAST"

    def in_(self, column: str, values: Sequence[object]) -> tuple[str, list[object]]:
        """``column`` is one of ``values``: the SQL and the arguments it takes."""
        if self.name == "postgresql":
            return f"{column} = ANY(?::text[])", [list(values)]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def firsts(
        self, select: str, key: str, keys: Sequence[str], order: str, limit: int
    ) -> tuple[str, list[object]]:
        """The first ``limit`` rows of ``select`` (no WHERE yet) by ``order`` for each of ``keys``.

        ``key`` is the column compared with each one. SQLite has no LATERAL:
        one sub-select per key, joined by UNION ALL (at most 500). PostgreSQL
        plans such a union anew for each execution (10 ms for 50 keys), so it
        gets one sub-select run over the array of keys.
        """

        def first(value: str) -> str:
            return f"{select} WHERE {key} = {value} ORDER BY {order} LIMIT {int(limit)}"

        if self.name == "postgresql":
            return (
                f"SELECT f.* FROM unnest(?::text[]) AS k(key) "
                f"CROSS JOIN LATERAL ({first('k.key')}) AS f",
                [list(keys)],
            )
        each = f"SELECT * FROM ({first('?')}) AS f"
        return " UNION ALL ".join(each for _ in keys), list(keys)


SQLITE = Dialect(name="sqlite", greatest="MAX", locks_rows=False)
POSTGRESQL = Dialect(name="postgresql", greatest="GREATEST", locks_rows=True)
