"""Unread counts and the conversation list of a user in many conversations, nothing read.

    .venv/bin/python bench/unread.py [--conversations 1000] [--messages 1000] [--db both]

Builds the store itself (CONVERSATIONS groups of the user and one other,
MESSAGES messages each from the other, none read), then prints, in the same
run and alternated: the user's unread counts by the definition (a COUNT over
the messages after each read pointer: how they were counted before) and as
kept now (message ordinals and counts: index lookups), and the first page of
the conversation list (50), p50 and p99 of 20. SQLite in a temporary file;
PostgreSQL on a fresh database from HUBBUB_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from hubbub.store import records
from hubbub.store.postgres import PostgresStore
from hubbub.store.sql import SQLStore
from hubbub.store.sqlite import SQLiteStore
from hubbub.store.tx import Tx

PG_ADMIN = os.environ.get(
    "HUBBUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ME = "me"


def filler(conversations: int, messages: int) -> Callable[[Tx], Awaitable[None]]:
    async def fill(tx: Tx) -> None:
        for c in range(conversations):
            cid = f"c{c:06d}"
            await tx.run(
                "INSERT INTO conversations (id, kind, title, created_by, created_at, last_seq, "
                "last_activity_at, message_count) VALUES (?, 'group', 't', ?, 0, ?, ?, ?)",
                cid,
                ME,
                messages,
                c,
                messages,
            )
            await tx.many(
                "INSERT INTO members (conversation_id, user_id, role, joined_at) "
                "VALUES (?, ?, 'member', 0)",
                [(cid, ME), (cid, "other")],
            )
            await tx.many(
                "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, "
                "client_msg_id, created_at, ordinal) VALUES (?, ?, ?, 'other', 'text', 'hello', "
                "?, 0, ?)",
                [(f"m{c}_{s}", cid, s, f"k{c}_{s}", s) for s in range(1, messages + 1)],
            )

    return fill


async def recounted(tx: Tx) -> int:
    rows = await tx.all(
        f"SELECT {records.unread_recount('m')} FROM members m WHERE m.user_id = ? AND m.hidden = 0",
        ME,
    )
    return sum(r[0] for r in rows)


async def kept(tx: Tx) -> int:
    rows = await tx.all(
        f"SELECT {records.unread('m', 'c')} FROM members m JOIN conversations c "
        "ON c.id = m.conversation_id WHERE m.user_id = ? AND m.hidden = 0",
        ME,
    )
    return sum(r[0] for r in rows)


async def timed(call: Callable[[], Awaitable[object]], times: int) -> tuple[list[float], object]:
    spent, result = [], None
    for _ in range(times):
        started = time.perf_counter()
        result = await call()
        spent.append((time.perf_counter() - started) * 1000)
    return sorted(spent), result


async def measure(name: str, store: SQLStore) -> None:
    for _round in range(2):
        for label, fn in (("recounted (before)", recounted), ("kept (now)", kept)):
            spent, total = await timed(lambda fn=fn: store.read(fn), 5)  # type: ignore[misc]
            print(
                f"  {name:10s} unread, {label:18s} median {statistics.median(spent):8.1f} ms"
                f"  max {spent[-1]:8.1f} ms  (total {total:,})"
            )
    spent, page = await timed(lambda: store.list_conversations(ME, 50), 20)
    assert isinstance(page, list)
    print(
        f"  {name:10s} conversation list, first 50: p50 {spent[10]:.1f} ms  "
        f"p99 {spent[-1]:.1f} ms (max of 20)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000, help="per conversation")
    parser.add_argument("--db", choices=["sqlite", "pg", "both"], default="both")
    args = parser.parse_args()
    fill = filler(args.conversations, args.messages)
    print(f"{args.conversations:,} conversations x {args.messages:,} messages, none read:")
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "unread.db", read_budget=600)
            await store.open()
            await store.transaction(fill)
            await measure("SQLite", store)
            await store.close()
    if args.db in ("pg", "both"):
        name = f"hubbub_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        try:
            pg = PostgresStore(url, read_budget=600)
            await pg.open()
            await pg.transaction(fill)
            conn = await asyncpg.connect(url)
            await conn.execute("ANALYZE")
            await conn.close()
            await measure("PostgreSQL", pg)
            await pg.close()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
