"""Conversations: creating, loading and listing them, with their members."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from hubbub.errors import Forbidden
from hubbub.ids import new_id
from hubbub.models import Conversation, ConversationSummary, Member, RoomSummary
from hubbub.store import push, records
from hubbub.store.access import blocked_between, membership
from hubbub.store.messages import enrich
from hubbub.store.tx import Tx

MEMBER_COLUMNS = "m.user_id, u.name, m.role, m.joined_at, m.read_seq, m.delivered_seq"
SUMMARY_MEMBERS = 20
"""Members a conversation list shows of each conversation: the first to join
(then by id), and the caller in any case; ``member_count`` tells how many
there are, and the conversation itself lists them all."""


def direct_key(a: str, b: str) -> str:
    low, high = sorted((a, b))
    return f"{len(low)}:{low}:{high}"


async def members(tx: Tx, conversation_id: str) -> list[Member]:
    found = await tx.all(
        f"SELECT {MEMBER_COLUMNS} FROM members m LEFT JOIN users u ON u.id = m.user_id "
        "WHERE m.conversation_id = ? ORDER BY m.joined_at, m.user_id",
        conversation_id,
    )
    return [records.member(row) for row in found]


async def member_ids(tx: Tx, conversation_id: str) -> list[str]:
    found = await tx.all("SELECT user_id FROM members WHERE conversation_id = ?", conversation_id)
    return [uid for (uid,) in found]


USERS_CHUNK = 500
"""Users whose conversations one statement reads."""


async def conversation_ids(tx: Tx, users: list[str]) -> dict[str, list[str]]:
    found: defaultdict[str, list[str]] = defaultdict(list)
    for start in range(0, len(users), USERS_CHUNK):
        among, args = tx.dialect.in_("user_id", users[start : start + USERS_CHUNK])
        for uid, cid in await tx.all(
            f"SELECT user_id, conversation_id FROM members WHERE {among}", *args
        ):
            found[uid].append(cid)
    return dict(found)


async def load(tx: Tx, conversation_id: str) -> Conversation | None:
    row = await tx.one(
        f"SELECT {records.CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?",
        conversation_id,
    )
    if row is None:
        return None
    return Conversation(
        **records.conversation_fields(row), members=await members(tx, conversation_id)
    )


async def _insert(
    tx: Tx,
    kind: str,
    title: str | None,
    owner: str,
    others: list[str],
    now_ms: int,
    owner_role: str = "owner",
    key: str | None = None,
) -> str | None:
    """A new conversation's id; None when its direct key exists already."""
    cid = new_id("c")
    created = await tx.value(
        "INSERT INTO conversations (id, kind, title, direct_key, created_by, created_at, "
        "last_activity_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) "
        "ON CONFLICT (direct_key) DO NOTHING RETURNING id",
        cid,
        kind,
        title,
        key,
        owner,
        now_ms,
    )
    if created is None:
        return None
    await tx.many(
        "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
        [(cid, owner, owner_role, now_ms)] + [(cid, u, "member", now_ms) for u in others],
    )
    await push.flag_members(tx, cid, [owner, *others], new=True)
    return cid


async def get_or_create_direct(
    tx: Tx, user_a: str, user_b: str, now_ms: int
) -> tuple[Conversation, bool]:
    if await blocked_between(tx, user_a, user_b):
        raise Forbidden("one of you has blocked the other")
    key = direct_key(user_a, user_b)
    # Concurrent creators (in any process) meet at the unique key: one inserts,
    # the others wait for its commit and then find its row.
    cid = await _insert(tx, "direct", None, user_a, [user_b], now_ms, "member", key)
    created = cid is not None
    if cid is None:
        cid = await tx.value("SELECT id FROM conversations WHERE direct_key = ?", key)
    conversation = await load(tx, cid)
    assert conversation is not None
    return conversation, created


async def create_group(
    tx: Tx, kind: str, owner: str, title: str, members: list[str], now_ms: int
) -> Conversation:
    others = [m for m in dict.fromkeys(members) if m != owner]
    cid = await _insert(tx, kind, title, owner, others, now_ms)
    assert cid is not None
    conversation = await load(tx, cid)
    assert conversation is not None
    return conversation


Position = tuple[int, str]
"""Where a conversation stands in a user's list: ``(last_activity_at, id)``."""

FIRSTS_CHUNK = 100  # conversations per statement (SQLite joins at most 500 selects)
"""Conversations whose members are read in one query."""


async def list_conversations(
    tx: Tx, user: str, limit: int | None = None, after: Position | None = None
) -> list[ConversationSummary]:
    """The user's visible conversations, newest activity first (then by id).

    ``after``: only those that come after that position in the list;
    ``limit``: at most that many. A constant number of statements for any
    page: one for the conversations with their unread counts and last
    messages, one for their first members (``first_members``), and the reactions and
    attachments of those last messages (``enrich``).
    """
    where, args = "", list[object]([user])
    if after is not None:
        where = " AND (c.last_activity_at < ? OR (c.last_activity_at = ? AND c.id > ?))"
        args += [after[0], after[0], after[1]]
    page = ""
    if limit is not None:
        page = " LIMIT ?"
        args.append(limit)
    # The page is chosen first; unread counts and last messages are read for
    # its conversations only.
    found = await tx.all(
        f"SELECT {records.CONVERSATION_COLUMNS}, me.read_seq, {records.unread('me', 'c')}, "
        f"{records.MESSAGE_COLUMNS}, c.member_count "
        "FROM (SELECT p.conversation_id AS cid FROM members p "
        "JOIN conversations c ON c.id = p.conversation_id "
        f"WHERE p.user_id = ? AND p.hidden = 0{where} "
        f"ORDER BY c.last_activity_at DESC, c.id{page}) AS chosen "
        "JOIN members me ON me.conversation_id = chosen.cid AND me.user_id = ? "
        "JOIN conversations c ON c.id = chosen.cid "
        "LEFT JOIN messages m ON m.conversation_id = chosen.cid AND m.seq = "
        "(SELECT MAX(x.seq) FROM messages x WHERE x.conversation_id = chosen.cid) "
        "LEFT JOIN users u ON u.id = m.sender_id "
        "ORDER BY c.last_activity_at DESC, c.id",
        *args,
        user,
    )
    ids = [row[0] for row in found]
    people = await first_members(tx, user, ids)
    summaries = []
    for row in found:
        fields = records.conversation_fields(row)
        last = None if row[9] is None else records.message(row[9:-1])
        summaries.append(
            ConversationSummary(
                **fields,
                members=people[fields["id"]],
                member_count=row[-1],
                last_message=last,
                read_seq=row[7],
                unread_count=row[8],
            )
        )
    await enrich(tx, [s.last_message for s in summaries if s.last_message is not None], user)
    return summaries


async def first_members(tx: Tx, user: str, ids: list[str]) -> dict[str, list[Member]]:
    """The first SUMMARY_MEMBERS members of each conversation, and ``user``.

    Each conversation's first members come from the members_by_join index,
    so a page of 1,000-member groups reads 20 members of each, not all.
    """
    people: defaultdict[str, list[Member]] = defaultdict(list)
    # Whole rows from the start: joining each back to members by key cost
    # PostgreSQL more than the rest of the statement (10 ms a page of 50).
    columns = "conversation_id, user_id, role, joined_at, read_seq, delivered_seq"
    for start in range(0, len(ids), FIRSTS_CHUNK):
        chunk = ids[start : start + FIRSTS_CHUNK]
        firsts, first_args = tx.dialect.firsts(
            f"SELECT {columns} FROM members",
            "conversation_id",
            chunk,
            "joined_at, user_id",
            SUMMARY_MEMBERS,
        )
        among, args = tx.dialect.in_("conversation_id", chunk)
        rows = await tx.all(
            f"SELECT m.conversation_id, {MEMBER_COLUMNS} FROM ({firsts} UNION ALL "
            f"SELECT {columns} FROM members WHERE {among} AND user_id = ?) AS m "
            "LEFT JOIN users u ON u.id = m.user_id",
            *first_args,
            *args,
            user,
        )
        # Deduplicated (the user may be among the first) and ordered here: a
        # UNION and an ORDER BY of the thousand rows cost the database more.
        unique = {(row[0], row[1]): row for row in rows}
        for cid, *member in sorted(unique.values(), key=_join_order):
            people[cid].append(records.member(member))
    return people


def _join_order(row: Sequence[Any]) -> tuple[str, int, str]:
    """(conversation, joined_at, user) of a ``first_members`` row."""
    return row[0], row[4], row[1]


async def list_rooms(tx: Tx, user: str, limit: int, offset: int) -> list[RoomSummary]:
    found = await tx.all(
        "SELECT c.id, c.title, c.created_by, c.created_at, c.last_activity_at, "
        "(SELECT COUNT(*) FROM members x WHERE x.conversation_id = c.id), "
        "EXISTS (SELECT 1 FROM members y WHERE y.conversation_id = c.id AND y.user_id = ?) "
        "FROM conversations c WHERE c.kind = 'room' "
        "ORDER BY c.last_activity_at DESC, c.id LIMIT ? OFFSET ?",
        user,
        limit,
        offset,
    )
    return [records.room(row) for row in found]


async def set_hidden(tx: Tx, user: str, cid: str, hidden: bool) -> None:
    await membership(tx, user, cid)
    await tx.run(
        "UPDATE members SET hidden = ? WHERE conversation_id = ? AND user_id = ?",
        int(hidden),
        cid,
        user,
    )
