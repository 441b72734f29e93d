"""SQLite: the newest matches of one conversation that holds a small share of the store.

FTS5's index knows words, not conversations: the newest matches of a word
in one conversation are found by reading the word's matches newest first
and keeping that conversation's. When the conversation holds a small share
of the messages and the word is common, that reads most of the word's
matches (millions) for a few of them. Then it is cheaper to read the
conversation's own messages newest first, a chunk at a time, and to match
each chunk with FTS5 itself: an in-memory FTS5 table of the same tokenizer
(one per reader thread, each chunk rolled back), so a message matches
here exactly when the store's index would match it.

A rare word is answered from the index alone: its newest ``PROBE`` matches
are read first, and when there are no more, the conversation's are among
them.
"""

from __future__ import annotations

import re
import sqlite3
import threading

from hubbub.store.tx import Tx

PROBE = 2000
"""A word's matches read from the index before the conversation is read instead."""
CHUNK = 1000
"""Messages of the conversation matched at a time."""
_TOKENIZE = re.compile(r"tokenize\s*=\s*('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", re.IGNORECASE)
_local = threading.local()


def _scratch(spec: str) -> sqlite3.Connection:
    """This thread's in-memory FTS5 table ``scan`` with the tokenizer ``spec``."""
    tables: dict[str, sqlite3.Connection] = getattr(_local, "tables", None) or {}
    _local.tables = tables
    conn = tables.get(spec)
    if conn is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=True)
        conn.execute(f"CREATE VIRTUAL TABLE scan USING fts5(body, content = '', tokenize = {spec})")
        tables[spec] = conn
    return conn


async def tokenizer(tx: Tx) -> str:
    """The ``tokenize`` option of the store's index, as written in its schema."""
    sql = await tx.value("SELECT sql FROM sqlite_master WHERE name = 'messages_fts'")
    found = _TOKENIZE.search(sql or "")
    return found.group(1) if found else "'unicode61'"


async def sparse(tx: Tx, cid: str, wanted: int, dense_scan: int) -> bool:
    """Whether finding ``wanted`` matches of ``cid`` through the index would read more
    than ``dense_scan`` matches of a word (the conversation's share of all messages)."""
    row = await tx.one(
        "SELECT message_count, (SELECT MAX(rowid) FROM messages) FROM conversations WHERE id = ?",
        cid,
    )
    if row is None or not row[1]:
        return False
    count, total = row
    return bool(wanted * total > dense_scan * max(count, 1))


async def conversation(tx: Tx, query: str, cid: str, skip: int, take: int) -> list[tuple[str, str]]:
    """``(id, body)`` of ``cid``'s matches of the FTS5 ``query``, newest first."""
    probe = await tx.all(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
        query,
        PROBE,
    )
    if len(probe) < PROBE:  # every match of the word: the conversation's are among them
        rows = await tx.all(
            "SELECT m.id, m.body FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            "WHERE messages_fts MATCH ? AND m.deleted_at IS NULL AND +m.conversation_id = ? "
            "ORDER BY messages_fts.rowid DESC LIMIT ? OFFSET ?",
            query,
            cid,
            take,
            skip,
        )
        return [(r[0], r[1]) for r in rows]
    scan = _scratch(await tokenizer(tx))
    found: list[tuple[str, str]] = []
    before = None
    while len(found) < skip + take:
        rows = await tx.all(
            "SELECT rowid, id, body, seq FROM messages WHERE conversation_id = ? AND seq < ? "
            "AND deleted_at IS NULL ORDER BY seq DESC LIMIT ?",
            cid,
            (1 << 62) if before is None else before,
            CHUNK,
        )
        if not rows:
            break
        # One transaction, rolled back: the chunk is matched from FTS5's
        # pending terms, never written out as index segments.
        scan.execute("BEGIN")
        try:
            # Oldest first: FTS5 writes out what it holds before a lower rowid.
            scan.executemany(
                "INSERT INTO scan (rowid, body) VALUES (?, ?)", [(r[0], r[2]) for r in rows[::-1]]
            )
            hits = {
                r for (r,) in scan.execute("SELECT rowid FROM scan WHERE scan MATCH ?", (query,))
            }
        finally:
            scan.execute("ROLLBACK")
        found += [(r[1], r[2]) for r in rows if r[0] in hits]
        before = rows[-1][3]
    return found[skip : skip + take]
