"""Unread counts, kept without counting messages, against a recount after every step.

Random (seeded) sequences of sends, sends by the server, deletes, read
pointers moved, joins and leaves, on both databases: after each step every
member's unread count (``records.unread``, index lookups) must equal the
count by definition (``records.unread_recount``: others' messages after the
read pointer, not deleted).
"""

from __future__ import annotations

import random
from typing import cast

from hubbub.errors import HubbubError
from hubbub.models import SendItem
from hubbub.store import records
from hubbub.store.base import Store
from hubbub.store.postgres import PostgresStore
from hubbub.store.sql import SQLStore
from hubbub.store.tx import Tx
from tests.services import fresh_postgres

NOW = 1_700_000_000_000
USERS = [f"r{n}" for n in range(5)]


async def _recount(tx: Tx) -> dict[tuple[str, str], int]:
    rows = await tx.all(
        f"SELECT m.user_id, m.conversation_id, {records.unread_recount('m')} FROM members m "
        "WHERE m.hidden = 0"
    )
    return {(user, cid): count for user, cid, count in rows}


async def test_unread_counts_match_a_recount_through_random_operations(store: Store) -> None:
    rng = random.Random(11)
    groups = [(await store.create_group("r0", f"g{n}", USERS[1 : 3 + n], NOW)).id for n in range(2)]
    direct, _ = await store.get_or_create_direct("r0", "r1", NOW)
    conversations = [*groups, direct.id]
    sent: list[tuple[str, str]] = []  # (message id, sender)
    for step in range(150):
        user, cid = rng.choice(USERS), rng.choice(conversations)
        action = rng.randrange(10)
        try:
            if action < 4:
                (result,) = await store.append_messages(
                    user, [SendItem(cid, f"m{step}", f"k{step}")], NOW + step
                )
                if not isinstance(result, HubbubError):
                    sent.append((result[0].id, user))
            elif action == 4:
                await store.append_messages(
                    "system", [SendItem(cid, "notice", f"s{step}", kind="system")], NOW, True
                )
            elif action == 5 and sent:
                mid, sender = rng.choice(sent)
                await store.delete_message(sender, mid, NOW + step)
            elif action == 6:
                conversation = await store.get_conversation(cid)
                assert conversation is not None
                await store.mark(user, cid, "read", rng.randint(0, conversation.last_seq))
            elif action == 7 and cid in groups:
                await store.add_members("r0", cid, [user], 100, NOW)
            elif action == 8 and cid in groups and user != "r0":
                await store.remove_member(user, cid, user, NOW)
            else:
                await store.set_hidden(user, cid, rng.random() < 0.3)
        except HubbubError:
            pass  # not a member, deleted already, ...: the counts must hold all the same
        expected = await cast(SQLStore, store).transaction(_recount)
        for member in USERS:
            kept = await store.unread(member)
            wanted = {cid: n for (u, cid), n in expected.items() if u == member}
            assert kept == wanted, (step, member, kept, wanted)
    assert any(n for n in expected.values())  # the sequence left something unread


async def _old_release_send(tx: Tx, cid: str, seq: int) -> None:
    """What a send of the release before ordinals wrote (still serving in a rolling upgrade)."""
    await tx.run("UPDATE conversations SET last_seq = ? WHERE id = ?", seq, cid)
    await tx.run(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_msg_id, "
        "created_at) VALUES (?, ?, ?, 'r1', 'text', 'old', ?, 0)",
        f"old{seq}",
        cid,
        seq,
        f"old{seq}",
    )


async def test_messages_of_an_older_release_are_counted_on_postgres() -> None:
    async with fresh_postgres() as url:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        try:
            group = await store.create_group("r0", "g", ["r1"], NOW)
            await store.append_messages("r1", [SendItem(group.id, "new", "n1")], NOW)
            await store.transaction(_old_release_send, group.id, 2)
            await store.append_messages("r1", [SendItem(group.id, "new", "n3")], NOW)
            assert await store.unread("r0") == {group.id: 3}
            await store.mark("r0", group.id, "read", 2)
            assert await store.unread("r0") == {group.id: 1}
        finally:
            await store.close()
