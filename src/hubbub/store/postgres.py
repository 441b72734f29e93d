"""The scale-out store: PostgreSQL through an asyncpg connection pool.

Each method is one transaction on a pooled connection, running the same SQL
functions as SQLite (see ``sql.py``); ``PostgresTx`` numbers their ``?``
placeholders as asyncpg wants them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from functools import lru_cache
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg

from hubbub import migrations
from hubbub.errors import Unavailable
from hubbub.models import SendItem
from hubbub.store import sends
from hubbub.store.base import Appended
from hubbub.store.batching import BATCHES, MAX_ITEMS, SendBatcher
from hubbub.store.sql import READ_BUDGET, SQLStore, too_long
from hubbub.store.tx import POSTGRESQL, Dialect, Row, Tx

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("hubbub.store")

RETRIES = 4
RETRY_BASE = 0.01  # seconds; full jitter, doubling per attempt
# What a database that is down, restarting, refusing connections or out of
# resources raises: the client is told ``unavailable`` (retry), not ``internal``.
UNUSABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.InternalClientError,  # a connection left mid-operation when its server went away
    asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up, cancelled
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.IdleInTransactionSessionTimeoutError,  # 25P03: the server ended the session
)
# A statement that did not finish in time: cancelled by the server
# (statement_timeout, which is class 57 too), refused a lock (lock_timeout), or
# timed out by the pool (command_timeout, acquiring a connection; TimeoutError
# above). The transaction is rolled back and the connection is sound.
TIMED_OUT = (
    asyncpg.QueryCanceledError,  # 57014
    asyncpg.LockNotAvailableError,  # 55P03
)


PLACEHOLDER = re.compile(r"\?(\d*)")


@lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, ...`` (``?N`` as ``$N``)."""
    count = 0

    def number(found: re.Match[str]) -> str:
        nonlocal count
        if found.group(1):
            return f"${found.group(1)}"
        count += 1
        return f"${count}"

    return PLACEHOLDER.sub(number, sql)


def changed(status: str) -> int:
    """Rows touched, from a status such as ``UPDATE 1``."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresTx:
    """``Tx`` over one pooled connection inside its transaction."""

    __slots__ = ("_conn",)
    dialect: Dialect = POSTGRESQL

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def one(self, sql: str, *args: object) -> Row | None:
        return await self._conn.fetchrow(numbered(sql), *args)  # type: ignore[no-any-return]

    async def all(self, sql: str, *args: object) -> list[Row]:
        return await self._conn.fetch(numbered(sql), *args)  # type: ignore[no-any-return]

    async def value(self, sql: str, *args: object) -> Any:
        return await self._conn.fetchval(numbered(sql), *args)

    async def run(self, sql: str, *args: object) -> int:
        return changed(await self._conn.execute(numbered(sql), *args))

    async def many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._conn.executemany(numbered(sql), rows)


class PostgresStore(SQLStore):
    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        timeout: float = 30.0,
        read_pool_size: int = 4,
        read_budget: float = READ_BUDGET,
        send_batches: int = BATCHES,
        send_batch_items: int = MAX_ITEMS,
    ) -> None:
        """``send_batches``: transactions storing sends at once (group commit, see
        ``batching.py``), 0 for one transaction per call, item after item."""
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        """Seconds a statement may run, and a transaction wait for a connection."""
        self.read_pool_size = read_pool_size
        self.read_budget = read_budget
        self._pool: asyncpg.Pool | None = None
        self._readers: asyncpg.Pool | None = None
        """Reads have connections of their own: however many run, writers get theirs."""
        self._observe: Callable[[float], None] | None = None
        self._sends = (
            SendBatcher(self._append_calls, send_batch_items, send_batches)
            if send_batches > 0
            else None
        )

    def observe_commits(self, observe: Callable[[float], None]) -> None:
        """Report each committed transaction's seconds (from BEGIN to COMMIT)."""
        self._observe = observe

    async def open(self, migrate: bool = True) -> None:
        if migrate:
            await asyncio.to_thread(migrations.upgrade, self.url)
        # No floor of idle connections: the pool would keep reconnecting to a
        # database that is down, logging a traceback each time. Connections are
        # made when needed and kept while in use; the ping checks the database
        # now, so a wrong URL fails the start.
        self._pool = await asyncpg.create_pool(
            self.url, min_size=0, max_size=self.pool_size, command_timeout=self.timeout
        )
        self._readers = await asyncpg.create_pool(
            self.url, min_size=0, max_size=self.read_pool_size, command_timeout=self.timeout
        )
        await self.ping()

    async def append_messages(
        self, sender: str, items: list[SendItem], now_ms: int, as_server: bool = False
    ) -> list[Appended]:
        if self._sends is None:
            return await super().append_messages(sender, items, now_ms, as_server)
        return await self._sends.append(sender, items, now_ms, as_server)

    async def _append_calls(self, calls: list[sends.Call]) -> list[list[Appended]]:
        return await self.transaction(sends.append_calls, calls)

    async def close(self) -> None:
        if self._sends is not None:
            await self._sends.close()
        for pool in (self._readers, self._pool):
            if pool is not None:
                await pool.close()
        self._pool = self._readers = None

    async def read(
        self,
        fn: Callable[Concatenate[Tx, P], Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """A read-only transaction on the readers' pool, within ``read_budget``.

        Past the budget the read is cancelled (asyncpg cancels its statement
        on the server, and the connection serves again) and the caller gets
        ``too_large``. A wait for a connection is not counted: it ends as
        ``unavailable``, like a statement the database's own timeouts ended.
        """
        if self._readers is None:
            raise Unavailable("the database is not open")
        try:
            async with self._readers.acquire(timeout=self.timeout) as conn:
                try:
                    return await asyncio.wait_for(
                        _read_on(conn, fn, *args, **kwargs), self.read_budget
                    )
                except TimeoutError:
                    raise too_long(self.read_budget) from None
        except (*TIMED_OUT, *UNUSABLE) as exc:
            raise unavailable(exc) from None

    async def transaction(
        self,
        fn: Callable[Concatenate[Tx, P], Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if self._pool is None:
            raise Unavailable("the database is not open")
        for attempt in range(RETRIES + 1):
            try:
                async with self._pool.acquire(timeout=self.timeout) as conn:
                    try:
                        started = time.perf_counter()
                        async with conn.transaction():
                            result = await fn(PostgresTx(conn), *args, **kwargs)
                        if self._observe is not None:
                            self._observe(time.perf_counter() - started)
                        return result
                    except TIMED_OUT:
                        raise
                    except UNUSABLE:
                        # Whatever state it is in, this connection is not
                        # handed out again.
                        conn.terminate()
                        raise
            except asyncpg.StatementCompletionUnknownError as exc:
                raise Unavailable(f"database unavailable: {exc}") from None  # may have committed
            except asyncpg.TransactionRollbackError as exc:
                # A deadlock or serialization failure rolled the whole
                # transaction back: nothing of it was committed, so running it
                # again cannot store anything twice.
                if attempt == RETRIES:
                    log.warning("transaction failed %d times: %s", RETRIES + 1, exc)
                    raise Unavailable("the database is busy; retry") from None
                log.warning("transaction rolled back (%s); retrying", type(exc).__name__)
                await asyncio.sleep(random.uniform(0, RETRY_BASE * 2**attempt))
            except TIMED_OUT as exc:
                log.warning("database statement timed out: %s", exc)
                raise unavailable(exc) from None
            except UNUSABLE as exc:
                raise unavailable(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover


def unavailable(exc: BaseException) -> Unavailable:
    """What the caller is told of a statement that timed out or a database it cannot use."""
    if isinstance(exc, TIMED_OUT):
        return Unavailable(f"the database timed out; retry ({exc})")
    return Unavailable(f"database unavailable: {type(exc).__name__}: {exc}")


async def _read_on(
    conn: asyncpg.Connection,
    fn: Callable[Concatenate[Tx, P], Coroutine[Any, Any, T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    # Errors become Unavailable here, so that the only TimeoutError leaving is
    # the read budget's (asyncio.wait_for's).
    try:
        async with conn.transaction(readonly=True):
            return await fn(PostgresTx(conn), *args, **kwargs)
    except TIMED_OUT as exc:  # rolled back; the connection is sound
        raise unavailable(exc) from None
    except UNUSABLE as exc:
        conn.terminate()  # whatever state it is in, not handed out again
        raise unavailable(exc) from None
