"""Sends of many callers committed together: numbering, counts, dedup, isolation, faults.

Both stores group the sends that arrive together into one transaction (the
SQLite worker, PostgreSQL's ``batching.SendBatcher``). What holds for sends
one by one must hold for them: unique gap-free seqs in commit order, counts
equal to a recount, one message per ``client_msg_id``, a refused send refusing
only itself, and nothing acknowledged that was not committed.

On PostgreSQL a test can make calls queue into one batch: another session holds
the conversation's row lock, so the batches under way wait on it and the calls
that come meanwhile queue behind them, then go as one batch.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from hubbub.errors import Forbidden, HubbubError, Unavailable
from hubbub.models import Message, SendItem
from hubbub.store.base import Appended, Store
from hubbub.store.batching import BATCHES
from hubbub.store.postgres import PostgresStore
from hubbub.store.sql import SQLStore
from hubbub.store.sqlite import SQLiteStore
from hubbub.store.tx import Tx
from tests.contract.test_unread import _recount
from tests.services import fresh_postgres

NOW = 1_700_000_000_000
USERS = [f"g{n}" for n in range(12)]


def stored(result: Appended) -> tuple[Message, bool]:
    assert not isinstance(result, HubbubError), result
    return result


async def _counts(tx: Tx) -> list[tuple[str, int, int, int, int]]:
    """Per conversation: message_count, messages, last_seq, events."""
    rows = await tx.all(
        "SELECT c.id, c.message_count, (SELECT COUNT(*) FROM messages m "
        "WHERE m.conversation_id = c.id), c.last_seq, (SELECT COUNT(*) FROM events e "
        "WHERE e.conversation_id = c.id) FROM conversations c ORDER BY c.id"
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def _ordinals(tx: Tx) -> list[tuple[str, int, int]]:
    """Every message's ordinal beside its place by seq (they must be equal)."""
    rows = await tx.all(
        "SELECT id, ordinal, ROW_NUMBER() OVER (PARTITION BY conversation_id ORDER BY seq) "
        "FROM messages"
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def _read_seqs(tx: Tx) -> dict[tuple[str, str], int]:
    rows = await tx.all("SELECT user_id, conversation_id, read_seq FROM members")
    return {(u, c): s for u, c, s in rows}


async def test_concurrent_sends_get_unique_gapless_seqs_once_each(store: Store) -> None:
    sql = cast(SQLStore, store)
    assert isinstance(store, PostgresStore | SQLiteStore)
    commits: list[float] = []
    store.observe_commits(commits.append)
    groups = [(await store.create_group(USERS[0], f"t{n}", USERS[1:], NOW)).id for n in range(3)]
    commits.clear()
    rng = random.Random(5)
    acked: list[tuple[str, str, Message]] = []  # (sender, client id, message)
    calls = 0

    async def sender(user: str) -> None:
        nonlocal calls
        for n in range(12):
            cid = rng.choice(groups)
            items = [SendItem(cid, f"{user}/{n}/{k}", f"{user}-{n}-{k}") for k in range(3)]
            calls += 1
            for item, result in zip(
                items, await store.append_messages(user, items, NOW + n), strict=True
            ):
                message, created = stored(result)
                assert created
                acked.append((user, item.client_msg_id, message))

    await asyncio.gather(*(sender(u) for u in USERS))
    assert len(commits) < calls  # grouped: fewer transactions than callers
    # Each send acked once, each with its own message.
    assert len({(u, k) for u, k, _ in acked}) == len(acked) == 12 * 12 * 3
    assert len({m.id for _, _, m in acked}) == len(acked)
    for cid in groups:
        seqs = [m.seq for _, _, m in acked if m.conversation_id == cid]
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
        # A sender's sends keep their order (each call waits for the one before).
        for user in USERS:
            own = [m.seq for u, _, m in acked if u == user and m.conversation_id == cid]
            assert own == sorted(own)
        page = await store.list_messages(USERS[0], cid, before=None, after=None, limit=500)
        by_seq = {m.seq: m for _, _, m in acked if m.conversation_id == cid}
        assert [(m.seq, m.id, m.body) for m in page.messages] == [
            (s, by_seq[s].id, by_seq[s].body) for s in sorted(by_seq)
        ]
    for _cid, count, messages, last_seq, events in await sql.transaction(_counts):
        assert count == messages == last_seq == events
    assert all(o == n for _, o, n in await sql.transaction(_ordinals))
    # Every sender has read up to its own last message; the unread counts hold.
    reads = await sql.transaction(_read_seqs)
    for user in USERS:
        for cid in groups:
            own = [m.seq for u, _, m in acked if u == user and m.conversation_id == cid]
            if own:
                assert reads[(user, cid)] >= max(own)
    expected = await sql.transaction(_recount)
    for user in USERS:
        wanted = {cid: n for (u, cid), n in expected.items() if u == user}
        assert await store.unread(user) == wanted


async def test_the_same_client_id_stores_one_message_within_and_across_calls(
    store: Store,
) -> None:
    group = await store.create_group("a", "g", ["b"], NOW)
    item = SendItem(group.id, "once", "same")
    # Twice in one call, and from eight callers at once: one message.
    first, again = await store.append_messages("a", [item, item], NOW)
    assert stored(first)[1] and stored(again) == (stored(first)[0], False)
    results = await asyncio.gather(
        *(store.append_messages("a", [SendItem(group.id, "twice", "other")], NOW) for _ in range(8))
    )
    created = [stored(r)[1] for (r,) in results]
    assert created.count(True) == 1 and len({stored(r)[0].id for (r,) in results}) == 1
    conversation = await store.get_conversation(group.id)
    assert conversation is not None and conversation.last_seq == 2
    # Later, in a batch of its own: the original comes back.
    (later,) = await store.append_messages("a", [item], NOW + 5)
    assert stored(later) == (stored(first)[0], False)


async def test_a_refused_send_fails_alone(store: Store) -> None:
    group = await store.create_group("a", "g", ["b", "c"], NOW)
    await store.remove_member("c", group.id, "c", NOW)  # c left: its sends are refused
    results = await asyncio.gather(
        store.append_messages("a", [SendItem(group.id, "a1", "a1")], NOW),
        store.append_messages(
            "c", [SendItem(group.id, "c1", "c1"), SendItem(group.id, "c2", "c2")], NOW
        ),
        store.append_messages(
            "b",
            [SendItem(group.id, "b1", "b1"), SendItem("c_missing", "x", "x")],
            NOW,
        ),
    )
    (a1,), (c1, c2), (b1, missing) = results
    assert isinstance(c1, Forbidden) and isinstance(c2, Forbidden)
    assert isinstance(missing, HubbubError) and missing.code == "not_found"
    # The leave took seq 1; the two accepted messages follow without a gap.
    assert sorted([stored(a1)[0].seq, stored(b1)[0].seq]) == [2, 3]


# PostgreSQL: calls made to queue into one batch ------------------------------


@asynccontextmanager
async def postgres_store() -> AsyncIterator[tuple[PostgresStore, str]]:
    async with fresh_postgres() as url:
        store = PostgresStore(url, pool_size=BATCHES + 2)
        await store.open()
        try:
            yield store, url
        finally:
            await store.close()


@asynccontextmanager
async def holding(url: str, cid: str) -> AsyncIterator[asyncpg.Connection]:
    """Another session holding the conversation's row lock until the block ends."""
    other = await asyncpg.connect(url)
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", cid)
            yield other
    finally:
        await other.close()


async def _waiting(url: str, count: int) -> list[int]:
    """The backends waiting for a lock, once there are ``count`` of them."""
    admin = await asyncpg.connect(url)
    try:
        for _ in range(500):
            pids = [
                r[0]
                for r in await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ]
            if len(pids) >= count:
                return pids
            await asyncio.sleep(0.01)
    finally:
        await admin.close()
    raise AssertionError(f"{count} backends never waited for the lock")


async def _queued(
    store: PostgresStore, url: str, cid: str, calls: list[tuple[str, list[SendItem]]]
) -> tuple[list[list[Appended]], list[float]]:
    """``calls`` stored as one batch, behind BATCHES batches that wait for the lock."""
    commits: list[float] = []
    store.observe_commits(commits.append)
    async with holding(url, cid):
        ahead = [
            asyncio.ensure_future(
                store.append_messages("a", [SendItem(cid, f"ahead{n}", f"ahead{n}")], NOW)
            )
            for n in range(BATCHES)
        ]
        await _waiting(url, BATCHES)
        batch = [asyncio.ensure_future(store.append_messages(u, i, NOW)) for u, i in calls]
        await asyncio.sleep(0.05)
    for result in await asyncio.gather(*ahead):
        stored(result[0])
    return list(await asyncio.gather(*batch)), commits


async def test_postgres_dedup_and_refusals_inside_one_batch() -> None:
    async with postgres_store() as (store, url):
        group = await store.create_group("a", "g", ["b", "c"], NOW)
        await store.remove_member("c", group.id, "c", NOW)  # seq 1
        same = SendItem(group.id, "same", "k")
        results, commits = await _queued(
            store,
            url,
            group.id,
            [
                ("b", [same]),
                ("c", [SendItem(group.id, "refused", "c1")]),
                ("b", [SendItem(group.id, "b2", "b2"), same]),
                ("a", [same]),  # another sender's "k" is another message
            ],
        )
        assert len(commits) == BATCHES + 1  # the four calls went as one batch
        (b1,), (c1,), (b2, b_again), (a_same,) = results
        assert isinstance(c1, Forbidden)
        assert stored(b1)[1] and stored(b_again) == (stored(b1)[0], False)
        assert stored(b2)[1] and stored(a_same)[1] and stored(a_same)[0].id != stored(b1)[0].id
        # The batch's three new messages took consecutive seqs, in call order. Which of
        # the sends ahead went first is PostgreSQL's to choose: a transaction that
        # asks for the row just as the previous holder commits can take it before
        # the next waiter has woken (the batch then comes before the last ones ahead).
        seqs = [stored(b1)[0].seq, stored(b2)[0].seq, stored(a_same)[0].seq]
        assert seqs == list(range(seqs[0], seqs[0] + 3))
        page = await store.list_messages("a", group.id, before=None, after=None, limit=50)
        assert [m.seq for m in page.messages] == list(range(2, BATCHES + 5))  # none twice
        (again,) = await store.append_messages("b", [same], NOW)
        assert stored(again) == (stored(b1)[0], False)


async def test_postgres_a_send_the_database_refuses_fails_alone() -> None:
    async with postgres_store() as (store, url):
        group = await store.create_group("a", "g", ["b"], NOW)
        # PostgreSQL cannot store NUL in text (the protocol refuses it long
        # before; here it stands for any row the database itself refuses).
        results, _ = await _queued(
            store,
            url,
            group.id,
            [
                ("b", [SendItem(group.id, "fine", "f1")]),
                ("a", [SendItem(group.id, "ok", "a1"), SendItem(group.id, "bad\x00", "a2")]),
                ("b", [SendItem(group.id, "fine too", "f2")]),
            ],
        )
        (f1,), (a1, a2), (f2,) = results
        assert isinstance(a2, HubbubError) and a2.code == "internal"
        assert [stored(r)[0].seq for r in (f1, a1, f2)] == sorted(
            stored(r)[0].seq for r in (f1, a1, f2)
        )
        page = await store.list_messages("a", group.id, before=None, after=None, limit=50)
        assert [m.body for m in page.messages][-3:] == ["fine", "ok", "fine too"]
        assert [m.seq for m in page.messages] == list(range(1, BATCHES + 4))


async def test_postgres_a_connection_lost_mid_batch_acks_nothing_and_recovers() -> None:
    async with postgres_store() as (store, url):
        group = await store.create_group("a", "g", ["b"], NOW)
        items = [SendItem(group.id, f"lost{n}", f"l{n}") for n in range(3)]
        async with holding(url, group.id) as other:
            calls = [
                asyncio.ensure_future(store.append_messages(u, items, NOW)) for u in ("a", "b")
            ]
            for pid in await _waiting(url, 1):
                await other.fetchval("SELECT pg_terminate_backend($1)", pid)
            results = await asyncio.gather(*calls, return_exceptions=True)
        # Whoever lost their transaction is told to retry; nothing of it was stored.
        lost = [r for r in results if isinstance(r, BaseException)]
        assert lost and all(isinstance(r, Unavailable) for r in lost)
        page = await store.list_messages("a", group.id, before=None, after=None, limit=50)
        kept = [r for r in results if not isinstance(r, BaseException)]
        assert len(page.messages) == 3 * len(kept)
        # The store keeps working: the retries store each message once, gap-free.
        for user in ("a", "b"):
            for result in await store.append_messages(user, items, NOW):
                stored(result)
        page = await store.list_messages("a", group.id, before=None, after=None, limit=50)
        assert [m.seq for m in page.messages] == list(range(1, 7))
        assert len({(m.sender_id, m.client_msg_id) for m in page.messages}) == 6
        for _cid, count, messages, last_seq, events in await store.transaction(_counts):
            assert count == messages == last_seq == events
