"""Full-text search over a user's conversations (FTS5 on SQLite, tsvector on PostgreSQL)."""

from __future__ import annotations

from hubbub.models import SearchPage
from hubbub.store import records
from hubbub.store.access import membership
from hubbub.store.messages import enrich
from hubbub.store.tx import Tx


def fts_query(text: str) -> str:
    """User text as an FTS5 query: every word must appear (each quoted, so no syntax).

    A NUL would end FTS5's reading of the query inside a quoted word, so it
    separates words like a space. Empty when there is no word.
    """
    words = [w.replace('"', '""') for w in text.replace("\x00", " ").split()]
    return " ".join(f'"{w}"' for w in words)


async def search(
    tx: Tx, user: str, text: str, cid: str | None, limit: int, offset: int
) -> SearchPage:
    """Ranked matches in the user's conversations; deleted messages never match."""
    if cid is not None:
        await membership(tx, user, cid)
    within = "" if cid is None else " AND m.conversation_id = ?"
    scope = () if cid is None else (cid,)
    if tx.dialect.name == "postgresql":
        text = text.replace("\x00", " ")  # not storable in PostgreSQL text
        found = await tx.all(
            f"{records.SELECT_MESSAGE} JOIN members mb ON mb.conversation_id = m.conversation_id "
            "AND mb.user_id = ?, plainto_tsquery('simple', ?) q "
            f"WHERE m.body_tsv @@ q AND m.deleted_at IS NULL{within} "
            "ORDER BY ts_rank(m.body_tsv, q) DESC, m.created_at DESC LIMIT ? OFFSET ?",
            user,
            text,
            *scope,
            limit + 1,
            offset,
        )
    else:
        query = fts_query(text)
        if not query:  # FTS5 refuses an empty query; no word matches nothing
            return SearchPage(results=[], next_offset=None)
        found = await tx.all(
            f"SELECT {records.MESSAGE_COLUMNS} FROM messages_fts f "
            "JOIN messages m ON m.rowid = f.rowid LEFT JOIN users u ON u.id = m.sender_id "
            "JOIN members mb ON mb.conversation_id = m.conversation_id "
            f"WHERE messages_fts MATCH ? AND mb.user_id = ? AND m.deleted_at IS NULL{within} "
            "ORDER BY bm25(messages_fts), m.created_at DESC LIMIT ? OFFSET ?",
            query,
            user,
            *scope,
            limit + 1,
            offset,
        )
    results = await enrich(tx, [records.message(r) for r in found[:limit]], user)
    return SearchPage(results=results, next_offset=offset + limit if len(found) > limit else None)
