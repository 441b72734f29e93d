"""Search on both databases: the newest matches ranked, older ones after, and who sees what."""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
from pathlib import Path

import pytest

from hubbub import migrations
from hubbub.errors import Forbidden, NotFound
from hubbub.models import SearchPage, SendItem
from hubbub.store import messages, search, search_scan, sqlite_worker
from hubbub.store import sqlite as sqlite_store
from hubbub.store.base import Store
from hubbub.store.sql import SQLStore
from hubbub.store.sqlite import INDEX_SEGMENTS, SQLiteStore, index_pending
from hubbub.store.tx import Tx

NOW = 1_700_000_000_000
KEYS = itertools.count()


async def send(store: Store, user: str, cid: str, body: str) -> str:
    """Store one message and return its id. Ids order by the millisecond they are made in,
    so each send waits for the next one: "newest" is then the same on both databases."""
    await asyncio.sleep(0.002)
    (result,) = await store.append_messages(user, [SendItem(cid, body, f"k{next(KEYS)}")], NOW)
    assert not isinstance(result, Exception), result
    return result[0].id


async def find(
    store: Store,
    user: str,
    text: str,
    cid: str | None = None,
    limit: int = 20,
    offset: int = 0,
    window: int = search.WINDOW,
) -> SearchPage:
    """A search with the window of our choosing (the store's own uses ``search.WINDOW``)."""
    assert isinstance(store, SQLStore)
    return await store.read(search.search, user, text, cid, limit, offset, window)


def ids(page: SearchPage) -> list[str]:
    return [m.id for m in page.results]


async def everything(store: Store, user: str, text: str, limit: int, window: int) -> list[str]:
    """Every result, page by page, following ``next_offset``."""
    found: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await find(store, user, text, limit=limit, offset=offset, window=window)
        assert len(page.results) <= limit
        found += ids(page)
        offset = page.next_offset
    return found


def test_relevance_prefers_more_occurrences_then_shorter_then_newer() -> None:
    assert search.relevance("plan", ["a plan", "plan plan"]) == [1, 0]
    assert search.relevance("plan", ["plan for a long message here", "a plan"]) == [1, 0]
    assert search.relevance("plan", ["a plan", "a plan", "the plan"]) == [0, 1, 2]
    assert search.relevance("PLAN", ["x plan", "Plán, plan!"]) == [1, 0]
    assert search.relevance("plan", []) == []
    assert search.terms("Café_crème d'été 42") == ["cafe", "creme", "d", "ete", "42"]


async def test_the_newest_window_is_ranked_and_older_matches_follow_newest_first(
    store: Store,
) -> None:
    group = await store.create_group("ann", "g", ["bob"], NOW)
    sent = [
        await send(store, "bob", group.id, body)
        for body in (
            "alpha alpha alpha",  # the best match, but older than the window
            "alpha",
            "alpha and beta",
            "alpha alpha",
            "alpha with gamma and delta",
            "alpha",
        )
    ]
    await send(store, "bob", group.id, "no match here")
    oldest, m2, m3, m4, m5, newest = sent
    # A window of 3: the three newest matches by relevance, then the rest newest first.
    page = await find(store, "ann", "ALPHA", window=3)
    assert ids(page) == [m4, newest, m5, m3, m2, oldest] and page.next_offset is None
    # With the whole store in the window, the best match leads.
    assert ids(await find(store, "ann", "alpha"))[0] == oldest
    # Pages of 2 cross the window's end and add up to the same order.
    assert await everything(store, "ann", "alpha", 2, 3) == ids(page)
    second = await find(store, "ann", "alpha", limit=2, offset=2, window=3)
    assert ids(second) == [m5, m3] and second.next_offset == 4
    assert ids(await find(store, "ann", "alpha", limit=2, offset=4, window=3)) == [m2, oldest]
    last = await find(store, "ann", "alpha", limit=2, offset=4, window=3)
    assert last.next_offset is None
    beyond = await find(store, "ann", "alpha", limit=2, offset=6, window=3)
    assert beyond.results == [] and beyond.next_offset is None
    # A full page exactly at the end has no next page.
    assert (await find(store, "ann", "alpha", limit=6, window=3)).next_offset is None
    assert (await find(store, "ann", "alpha", limit=5, window=3)).next_offset == 5


async def test_a_common_word_past_the_window_answers_the_newest_matches(store: Store) -> None:
    group = await store.create_group("ann", "g", ["bob"], NOW)
    for i in range(60):
        await send(store, "bob", group.id, f"status {i} ok" + " ok" * (i % 3))
    page = await find(store, "ann", "ok", limit=10, window=10)
    seqs = sorted(m.seq for m in page.results)
    assert seqs == list(range(51, 61))  # exactly the 10 newest, whatever their rank
    counts = [m.body.count("ok") for m in page.results]
    assert counts == sorted(counts, reverse=True) == [3] * 4 + [2] * 3 + [1] * 3  # ranked
    assert page.next_offset == 10
    after = await find(store, "ann", "ok", limit=10, offset=10, window=10)
    assert [m.seq for m in after.results] == list(range(50, 40, -1))
    every = await everything(store, "ann", "ok", 25, 10)
    assert len(every) == len(set(every)) == 60


async def test_only_the_callers_conversations_and_never_deleted_messages(store: Store) -> None:
    mine = await store.create_group("ann", "mine", ["bob"], NOW)
    left = await store.create_group("bob", "left", ["ann"], NOW)
    theirs, _ = await store.get_or_create_direct("cat", "dan", NOW)
    kept = await send(store, "bob", mine.id, "budget draft")
    gone = await send(store, "bob", mine.id, "budget to delete")
    await send(store, "ann", left.id, "budget in a group ann leaves")
    await send(store, "cat", theirs.id, "budget of others")
    await store.delete_message("bob", gone, NOW)
    await store.remove_member("ann", left.id, "ann", NOW)
    for window in (1, search.WINDOW):
        page = await find(store, "ann", "budget", window=window)
        assert ids(page) == [kept] and page.next_offset is None
    assert ids(await find(store, "dan", "budget")) == [ids(await find(store, "cat", "budget"))[0]]
    assert (await find(store, "eve", "budget")).results == []  # in no conversation at all


async def test_conversation_filter(store: Store) -> None:
    one = await store.create_group("ann", "one", ["bob"], NOW)
    two = await store.create_group("ann", "two", ["bob"], NOW)
    other, _ = await store.get_or_create_direct("cat", "dan", NOW)
    in_one = await send(store, "bob", one.id, "launch day")
    in_two = await send(store, "bob", two.id, "launch plan")
    assert set(ids(await find(store, "ann", "launch"))) == {in_one, in_two}
    for window in (1, search.WINDOW):
        assert ids(await find(store, "ann", "launch", one.id, window=window)) == [in_one]
        assert ids(await find(store, "ann", "launch", two.id, window=window)) == [in_two]
    assert ids(await store.search("ann", "launch", one.id, 10, 0)) == [in_one]
    with pytest.raises(Forbidden):
        await store.search("ann", "launch", other.id, 10, 0)
    with pytest.raises(NotFound):
        await store.search("ann", "launch", "c_nowhere", 10, 0)


async def test_empty_and_odd_queries(store: Store) -> None:
    group = await store.create_group("ann", "g", ["bob"], NOW)
    hit = await send(store, "bob", group.id, 'say "hello" AND NOT world* (really)')
    for text in ("", "   ", "\x00", '"', "*", "(", "NEAR(", "-", "^", "!!!"):
        page = await store.search("ann", text, None, 10, 0)
        assert page.results == [] and page.next_offset is None, text
    for text in ('"hello"', "AND NOT", "world*", "Hello\x00world", "(really)"):
        assert ids(await store.search("ann", text, None, 10, 0)) == [hit], text
    assert (await store.search("ann", "hello nothing", None, 10, 0)).results == []


async def test_a_conversation_read_by_itself_finds_the_same(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reads a conversation's own messages (in chunks) when it holds a small share of
    the store; the results must be those the index gives. Both databases run it."""
    small = await store.create_group("ann", "small", ["bob"], NOW)
    other = await store.create_group("ann", "other", ["bob"], NOW)
    for i in range(12):
        await send(store, "bob", other.id, f"noise word {i}")
        if i % 2:
            await send(store, "bob", small.id, f"word {i}" + " word" * (i % 3))
    gone = await send(store, "bob", small.id, "word to delete")
    await store.delete_message("bob", gone, NOW)
    await send(store, "bob", small.id, "nothing")
    expected = [await everything_in(store, small.id, window) for window in (2, 500)]
    assert len(expected[0]) == 6 and gone not in expected[0]
    monkeypatch.setattr(search, "DENSE_SCAN", 0)  # every conversation counts as small
    monkeypatch.setattr(search_scan, "CHUNK", 3)
    for probe in (1, 100):  # the word's matches: more than probed, or all of them
        monkeypatch.setattr(search_scan, "PROBE", probe)
        assert [await everything_in(store, small.id, w) for w in (2, 500)] == expected
        assert (await find(store, "ann", "absent", small.id)).results == []


async def everything_in(store: Store, cid: str, window: int) -> list[str]:
    found: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await find(store, "ann", "word", cid, limit=2, offset=offset, window=window)
        found += ids(page)
        offset = page.next_offset
    return found


async def _send_edit_delete(tx: Tx, group: str) -> tuple[str, str, str]:
    """In one transaction: three messages, one edited and one deleted right after."""
    stored = await messages.append(
        tx, "bob", [SendItem(group, f"{word} draft", f"same-{word}") for word in WORDS], NOW, False
    )
    kept, edited, gone = (s[0].id for s in stored if not isinstance(s, Exception))
    await messages.edit(tx, "bob", edited, "renamed final", NOW)
    await messages.delete(tx, "bob", gone, NOW)
    return kept, edited, gone


WORDS = ("kept", "edited", "gone")


async def test_sent_edited_and_deleted_in_one_transaction(store: Store) -> None:
    """On SQLite a message's index entry is written with the rest of its transaction's,
    at the end: what an edit or delete in the same transaction left is what is found."""
    assert isinstance(store, SQLStore)
    group = await store.create_group("ann", "g", ["bob"], NOW)
    kept, edited, _ = await store.transaction(_send_edit_delete, group.id)
    assert ids(await find(store, "ann", "kept")) == [kept]
    assert ids(await find(store, "ann", "renamed")) == [edited]
    assert ids(await find(store, "ann", "draft")) == [kept]  # not the old body, not the deleted
    assert (await find(store, "ann", "gone")).results == []
    await store.edit_message("bob", kept, "kept again", NOW)  # indexed by now: edited in place
    await store.delete_message("bob", edited, NOW)
    assert ids(await find(store, "ann", "again")) == [kept]
    assert (await find(store, "ann", "draft")).results == []
    assert (await find(store, "ann", "renamed")).results == []
    if isinstance(store, SQLiteStore):
        assert await store.transaction(_fts_state) == 0


async def test_sends_committed_together_are_each_found(store: Store) -> None:
    group = await store.create_group("ann", "g", ["bob"], NOW)
    items = [SendItem(group.id, f"together w{n}x", f"t{n}") for n in range(40)]
    stored = await asyncio.gather(*(store.append_messages("bob", [item], NOW) for item in items))
    sent = [r[0][0].id for r in stored if not isinstance(r[0], Exception)]
    assert len(sent) == 40
    for n, mid in enumerate(sent):
        assert ids(await find(store, "ann", f"w{n}x")) == [mid]
    assert len(await everything(store, "ann", "together", 50, search.WINDOW)) == 40
    if isinstance(store, SQLiteStore):
        assert await store.transaction(_fts_state) == 0


INTEGRITY = "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)"
"""Raises unless the full-text index holds exactly the messages' bodies (FTS5's integrity
check against its content table; it also fails while a message waits for its entry)."""


async def _fts_state(tx: Tx) -> int:
    """Messages still waiting for their index entry; raises if the index is not whole."""
    waiting: int = await tx.value("SELECT COUNT(*) FROM messages_fts_pending")
    await tx.run(INTEGRITY)
    return waiting


def test_sqlite_hard_deletes_and_rolled_back_jobs_keep_the_index_whole(tmp_path: Path) -> None:
    """Rows deleted outright in the transaction that stored them, and a savepoint rolled
    back after storing, leave nothing for FTS5 to take out that it does not hold."""
    path = tmp_path / "fts.db"
    migrations.upgrade(f"sqlite:///{path}")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "INSERT INTO conversations (id, kind, title, created_by, created_at, last_seq, "
        "last_activity_at) VALUES ('c1', 'group', 't', 'ann', 0, 0, 0)"
    )
    insert = (
        "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_msg_id, "
        "created_at) VALUES (?, 'c1', ?, 'bob', 'text', ?, ?, 0)"
    )
    db.execute("BEGIN IMMEDIATE")
    for seq, body in enumerate(["indexed first", "removed outright", "undone later"], 1):
        db.execute(insert, (f"m{seq}", seq, body, f"k{seq}"))
    db.execute("DELETE FROM messages WHERE id = 'm2'")  # pending: no entry to take out
    db.execute("SAVEPOINT job")
    db.execute(insert, ("m4", 4, "rolled back", "k4"))
    db.execute("ROLLBACK TO job")
    db.execute("RELEASE job")
    db.execute("UPDATE messages SET body = 'undone edited' WHERE id = 'm3'")
    index_pending(db)
    db.execute("COMMIT")
    db.execute("DELETE FROM messages WHERE id = 'm1'")  # indexed: its entry goes
    found = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?"
    assert [db.execute(found, (w,)).fetchall() for w in ("indexed", "removed", "rolled")] == [
        [],
        [],
        [],
    ]
    assert len(db.execute(found, ("edited",)).fetchall()) == 1
    assert db.execute("SELECT COUNT(*) FROM messages_fts_pending").fetchone() == (0,)
    db.execute(INTEGRITY)
    db.close()


async def _index_shape(tx: Tx) -> tuple[int, int]:
    """The index's segments, and its ``automerge`` setting (FTS5's default 4 when unset)."""
    automerge = await tx.value("SELECT v FROM messages_fts_config WHERE k = 'automerge'")
    return await tx.value(INDEX_SEGMENTS), 4 if automerge is None else int(automerge)


async def _segments_after_sends(path: Path, sends: int) -> tuple[int, int]:
    store = SQLiteStore(path)
    await store.open()
    try:
        group = await store.create_group("ann", "g", ["bob"], NOW)
        for n in range(sends):  # one at a time: a group commit, and a segment, each
            (result,) = await store.append_messages(
                "bob", [SendItem(group.id, f"note {n} about merging", f"s{n}")], NOW
            )
            assert not isinstance(result, Exception), result
        await asyncio.sleep(0.2)  # the writer's idle steps
        shape = await store.transaction(_index_shape)
        assert len(await everything(store, "ann", "merging", 50, search.WINDOW)) == sends
        assert await store.transaction(_fts_state) == 0
        return shape
    finally:
        await store.close()


async def test_sqlite_merges_its_index_between_groups_not_inside_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FTS5's own merging is off (it ran inside the commit that crossed its work unit);
    the writer's steps between groups keep the segments few, and without them they pile
    up (to FTS5's crisis merge of 16 on a level)."""
    merged, automerge = await _segments_after_sends(tmp_path / "steps.db", 120)
    monkeypatch.setattr(sqlite_store, "merge_index", lambda conn: False)
    piled, _ = await _segments_after_sends(tmp_path / "none.db", 120)
    assert automerge == 0
    assert merged <= 8 < 12 <= piled


PACE_GROUPS = 160


async def test_sqlite_index_merging_keeps_pace_outside_the_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups of 256 twelve-word messages back to back (the writer's queue never
    empty): every commit adds exactly one segment to the index, none is merged inside
    it (FTS5's crisis merge would, once a level held 16), and the steps between groups
    keep the segments few."""
    monkeypatch.setattr(sqlite_worker, "MAX_GROUP", 1)  # each call a group of its own
    seen: list[tuple[str, int]] = []  # (where, the index's segments there)
    index, merge = sqlite_store.index_pending, sqlite_store.merge_index

    def indexing(conn: sqlite3.Connection) -> int:
        segments = conn.execute(INDEX_SEGMENTS).fetchone()[0]
        indexed = index(conn)
        if indexed:  # a group of messages (not the group's creation)
            seen.append(("group", segments))
        return indexed

    def merging(conn: sqlite3.Connection, owed: int) -> int:
        seen.append(("step", conn.execute(INDEX_SEGMENTS).fetchone()[0]))
        return merge(conn, owed)

    monkeypatch.setattr(sqlite_store, "index_pending", indexing)
    monkeypatch.setattr(sqlite_store, "merge_index", merging)
    store = SQLiteStore(tmp_path / "pace.db")
    await store.open()
    try:
        group = await store.create_group("ann", "g", ["bob"], NOW)
        words = [f"w{n}" for n in range(20_000)]
        pick = random.Random(7)
        batches = [
            [
                SendItem(group.id, " ".join(pick.choices(words, k=12)), f"p{g}-{i}")
                for i in range(256)
            ]
            for g in range(PACE_GROUPS)
        ]
        stored = await asyncio.gather(*(store.append_messages("bob", b, NOW) for b in batches))
        assert all(not isinstance(r, Exception) for results in stored for r in results)
        await asyncio.sleep(0.2)  # the idle steps after the last group
        final = await store.transaction(_index_shape)
    finally:
        await store.close()
    groups = [n for n, (where, _) in enumerate(seen) if where == "group"]
    assert len(groups) >= PACE_GROUPS
    after = [seen[n + 1][1] - seen[n][1] for n in groups if n + 1 < len(seen)]
    assert after == [1] * len(after), "a commit merged segments"
    assert sum(where == "step" for where, _ in seen) >= PACE_GROUPS // 2  # steps under load
    assert final[0] <= 12, final
