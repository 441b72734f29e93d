"""Full-text search over a user's conversations (FTS5 on SQLite, tsvector on PostgreSQL).

Ranked within a window: the newest ``WINDOW`` matches in scope are ordered
by relevance (``relevance``, the same on both databases), and the older
matches follow, newest first. Finding the newest matches is cheap on both
databases whatever the word (an FTS5 index read backwards by rowid stops
after the window; PostgreSQL walks the messages backwards checking each
stored ``body_tsv``, or, for a rare word, reads its GIN index), where
ranking every match by ``bm25`` or ``ts_rank`` read all of a common word's
messages: seconds over millions.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

from hubbub.models import Message, SearchPage
from hubbub.store import records, search_scan
from hubbub.store.access import membership
from hubbub.store.messages import enrich
from hubbub.store.tx import Tx

WINDOW = 500
"""The newest matches ranked by relevance; older ones follow newest first (docs/rest.md)."""
DENSE_SCAN = 20_000
"""SQLite: matches of a word read through the index, at most (expected), for one
conversation's; past that its own messages are read instead (``search_scan``)."""
K1 = 1.2
B = 0.75
"""BM25's term-frequency saturation and length normalisation (its usual constants)."""
_WORD = re.compile(r"[^\W_]+")


def fts_query(text: str) -> str:
    """User text as an FTS5 query: every word must appear (each quoted, so no syntax).

    A NUL would end FTS5's reading of the query inside a quoted word, so it
    separates words like a space. Empty when there is no word.
    """
    words = [w.replace('"', '""') for w in text.replace("\x00", " ").split()]
    return " ".join(f'"{w}"' for w in words)


def fold(text: str) -> str:
    """``text`` with case and accents folded, as SQLite's index folds them."""
    text = text.casefold()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def terms(text: str) -> list[str]:
    """Words of ``text`` for ranking: letters and digits, case and accents folded."""
    return _WORD.findall(fold(text))


def relevance(query: str, bodies: Sequence[str]) -> list[int]:
    """Positions of ``bodies`` (newest first) best match first, then newest first.

    BM25's term-frequency and length terms, with the length averaged over
    these bodies: more occurrences of the query's words score higher, with
    diminishing returns, and a short message beats a long one with as many.
    Every body matched every word, so BM25's rarity weight (IDF) would scale
    each word's term alike and is left out; the score needs no statistics
    of the whole index. Cheap (a regular expression and a split per body,
    both in C): it runs beside sends, on a reader thread or the event loop.
    """
    words = sorted(set(terms(query)))
    if not words or not bodies:
        return list(range(len(bodies)))
    pattern = re.compile(r"(?<![^\W_])(?:" + "|".join(re.escape(w) for w in words) + r")(?![^\W_])")
    found, lengths = [], []
    for body in bodies:
        text = fold(body)
        found.append(pattern.findall(text))
        lengths.append(len(text.split()))
    average = max(sum(lengths) / len(lengths), 1.0)
    scores = []
    for hits, length in zip(found, lengths, strict=True):
        norm = K1 * (1 - B + B * length / average)
        counts = Counter(hits).values() if len(words) > 1 else ([len(hits)] if hits else [])
        scores.append(sum(tf * (K1 + 1) / (tf + norm) for tf in counts))
    return sorted(range(len(bodies)), key=lambda i: (-scores[i], i))


async def newest(
    tx: Tx, user: str, text: str, cid: str | None, skip: int, take: int
) -> list[tuple[str, str]]:
    """``(id, body)`` of matches in scope, newest first, from the ``skip``-th, at most ``take``.

    Newest is the order of storing: SQLite's rowid (which FTS5 reads in
    either direction), PostgreSQL's message ids (time-ordered) or, within
    one conversation, seq.
    """
    if tx.dialect.name == "postgresql":
        if cid is None:
            scope, order, args = (
                "m.conversation_id IN (SELECT conversation_id FROM members WHERE user_id = ?)",
                "m.id",
                [user],
            )
        else:
            scope, order, args = "m.conversation_id = ?", "m.seq", [cid]
        rows = await tx.all(
            "SELECT m.id, m.body FROM messages m "
            "WHERE m.body_tsv @@ plainto_tsquery('simple', ?) AND m.deleted_at IS NULL "
            f"AND {scope} ORDER BY {order} DESC LIMIT ? OFFSET ?",
            text.replace("\x00", " "),  # not storable in PostgreSQL text
            *args,
            take,
            skip,
        )
    elif cid is not None and await search_scan.sparse(tx, cid, skip + take, DENSE_SCAN):
        return await search_scan.conversation(tx, fts_query(text), cid, skip, take)
    else:
        # The index leads, read backwards, so the scan stops after ``take``;
        # the unary + keeps SQLite from leading with the conversation's
        # messages instead (each then looked up in the index: far slower).
        scope = (
            "m.conversation_id IN (SELECT conversation_id FROM members WHERE user_id = ?)"
            if cid is None
            else "+m.conversation_id = ?"
        )
        rows = await tx.all(
            "SELECT m.id, m.body FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            f"WHERE messages_fts MATCH ? AND m.deleted_at IS NULL AND {scope} "
            "ORDER BY messages_fts.rowid DESC LIMIT ? OFFSET ?",
            fts_query(text),
            user if cid is None else cid,
            take,
            skip,
        )
    return [(r[0], r[1]) for r in rows]


async def search(
    tx: Tx,
    user: str,
    text: str,
    cid: str | None,
    limit: int,
    offset: int,
    window: int = WINDOW,
) -> SearchPage:
    """Matches in the user's conversations, the newest ``window`` ranked; deleted never match.

    The order of all results: the newest ``window`` matches by ``relevance``,
    then every older match, newest first; a page is ``offset``, ``limit`` of it.
    """
    if cid is not None:
        await membership(tx, user, cid)
    if not fts_query(text):  # no word matches nothing (FTS5 refuses an empty query)
        return SearchPage(results=[], next_offset=None)
    if tx.dialect.name == "postgresql":
        # Planned for this word, never by a plan cached for any word: only the
        # word's frequency tells reading messages backwards (a common word)
        # from its GIN index (a rare one), seconds apart at scale.
        await tx.value("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")
    chosen: list[str] = []
    full = False
    if offset < window:
        ranked = await newest(tx, user, text, cid, 0, window)
        order = relevance(text, [body for _, body in ranked])
        chosen = [ranked[i][0] for i in order[offset : offset + limit + 1]]
        full = len(ranked) == window
    if offset >= window or (full and len(chosen) <= limit):
        older = await newest(tx, user, text, cid, max(offset, window), limit + 1 - len(chosen))
        chosen += [mid for mid, _ in older]
    results = await _messages(tx, chosen[:limit], user)
    return SearchPage(results=results, next_offset=offset + limit if len(chosen) > limit else None)


async def _messages(tx: Tx, ids: list[str], user: str) -> list[Message]:
    """The messages of ``ids``, in that order, with their attachments and reactions."""
    if not ids:
        return []
    among, args = tx.dialect.in_("m.id", ids)
    found = {
        r[0]: records.message(r)
        for r in await tx.all(f"{records.SELECT_MESSAGE} WHERE {among}", *args)
    }
    return await enrich(tx, [found[mid] for mid in ids if mid in found], user)
