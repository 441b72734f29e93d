"""Users, conversations, membership, rooms and blocks (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from hubbub.errors import Forbidden, Invalid, NotFound, TooLarge
from hubbub.ids import new_id
from hubbub.models import Conversation, ConversationSummary, RoomSummary, StreamEvent
from hubbub.store import postgres_rows as rows
from hubbub.store import records
from hubbub.store.postgres_rows import Conn
from hubbub.store.sqlite_conversations import direct_key


async def set_user_name(conn: Conn, user_id: str, name: str, now_ms: int) -> None:
    await conn.execute(
        "INSERT INTO users (id, name, updated_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at "
        "WHERE users.name IS DISTINCT FROM excluded.name",
        user_id,
        name,
        now_ms,
    )


async def set_last_seen(conn: Conn, user_id: str, now_ms: int) -> None:
    await conn.execute(
        "INSERT INTO users (id, updated_at, last_seen) VALUES ($1, $2, $2) "
        "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        user_id,
        now_ms,
    )


async def last_seen(conn: Conn, user_ids: list[str]) -> dict[str, int | None]:
    found = dict(
        await conn.fetch("SELECT id, last_seen FROM users WHERE id = ANY($1::text[])", user_ids)
    )
    return {u: found.get(u) for u in user_ids}


async def _insert(
    conn: Conn,
    kind: str,
    title: str | None,
    owner: str,
    others: list[str],
    now_ms: int,
    owner_role: str = "owner",
    key: str | None = None,
) -> str | None:
    cid = new_id("c")
    created = await conn.fetchval(
        "INSERT INTO conversations (id, kind, title, direct_key, created_by, created_at, "
        "last_activity_at) VALUES ($1, $2, $3, $4, $5, $6, $6) "
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
    await conn.executemany(
        "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)",
        [(cid, owner, owner_role, now_ms)] + [(cid, u, "member", now_ms) for u in others],
    )
    return cid


async def get_or_create_direct(
    conn: Conn, user_a: str, user_b: str, now_ms: int
) -> tuple[Conversation, bool]:
    if await conn.fetchval(
        "SELECT 1 FROM blocks WHERE (blocker = $1 AND blocked = $2) "
        "OR (blocker = $2 AND blocked = $1)",
        user_a,
        user_b,
    ):
        raise Forbidden("one of you has blocked the other")
    key = direct_key(user_a, user_b)
    # Concurrent creators (in any process) meet at the unique key: one inserts,
    # the others wait for its commit and then find its row.
    cid = await _insert(conn, "direct", None, user_a, [user_b], now_ms, "member", key)
    created = cid is not None
    if cid is None:
        cid = await conn.fetchval("SELECT id FROM conversations WHERE direct_key = $1", key)
    conversation = await rows.load_conversation(conn, cid)
    assert conversation is not None
    return conversation, created


async def create_group(
    conn: Conn, kind: str, owner: str, title: str, members: list[str], now_ms: int
) -> Conversation:
    others = [m for m in dict.fromkeys(members) if m != owner]
    cid = await _insert(conn, kind, title, owner, others, now_ms)
    assert cid is not None
    conversation = await rows.load_conversation(conn, cid)
    assert conversation is not None
    return conversation


async def member_ids(conn: Conn, conversation_id: str) -> list[str]:
    found = await conn.fetch(
        "SELECT user_id FROM members WHERE conversation_id = $1", conversation_id
    )
    return [uid for (uid,) in found]


async def list_conversations(conn: Conn, user: str) -> list[ConversationSummary]:
    found = await conn.fetch(
        f"SELECT {records.CONVERSATION_COLUMNS}, m.read_seq, {records.UNREAD} "
        "FROM members m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.user_id = $1 AND m.hidden = 0 ORDER BY c.last_activity_at DESC, c.id",
        user,
    )
    summaries = []
    for row in found:
        fields = records.conversation_fields(tuple(row))
        last = await conn.fetchrow(
            f"{records.SELECT_MESSAGE} WHERE m.conversation_id = $1 ORDER BY m.seq DESC LIMIT 1",
            fields["id"],
        )
        summaries.append(
            ConversationSummary(
                **fields,
                members=await rows.members(conn, fields["id"]),
                last_message=(
                    None
                    if last is None
                    else (await rows.enrich(conn, [records.message(tuple(last))], user))[0]
                ),
                read_seq=row[7],
                unread_count=row[8],
            )
        )
    return summaries


async def _moderate(conn: Conn, user: str, cid: str, roles: tuple[str, ...]) -> str:
    kind, role = await rows.membership(conn, user, cid)
    if kind == "direct":
        raise Forbidden("direct conversations have no membership to change")
    if role not in roles:
        raise Forbidden(f"only a {' or '.join(roles)} can do this")
    return kind


async def _event(conn: Conn, cid: str, kind: str, data: dict[str, Any], now_ms: int) -> StreamEvent:
    seq = await rows.add_event(conn, cid, kind, now_ms, data=data)
    return StreamEvent(conversation_id=cid, seq=seq, type=kind, data=data)


async def rename(conn: Conn, user: str, cid: str, title: str, now_ms: int) -> list[StreamEvent]:
    await _moderate(conn, user, cid, ("owner", "admin"))
    await conn.execute("UPDATE conversations SET title = $1 WHERE id = $2", title, cid)
    return [await _event(conn, cid, "conversation.renamed", {"title": title, "by": user}, now_ms)]


async def _join(
    conn: Conn, cid: str, user: str, by: str | None, now_ms: int, role: str = "member"
) -> StreamEvent:
    # A newcomer starts caught up: earlier history is readable, not unread.
    await conn.execute(
        "INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq, delivered_seq) "
        "SELECT $1, $2, $3, $4, last_seq, last_seq FROM conversations WHERE id = $1",
        cid,
        user,
        role,
        now_ms,
    )
    return await _event(
        conn, cid, "member.joined", {"user_id": user, "role": role, "by": by}, now_ms
    )


async def _lock(conn: Conn, cid: str) -> None:
    """Take the conversation's row lock (membership changes and sends serialise on it)."""
    await conn.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", cid)


async def _lock_members(conn: Conn, cid: str) -> list[str]:
    """Members, under the conversation's row lock (membership changes serialise)."""
    await _lock(conn, cid)
    return await member_ids(conn, cid)


async def add_members(
    conn: Conn, user: str, cid: str, new: list[str], limit: int, now_ms: int
) -> list[StreamEvent]:
    await _moderate(conn, user, cid, ("owner", "admin"))
    current = set(await _lock_members(conn, cid))
    joining = [u for u in dict.fromkeys(new) if u not in current]
    if len(current) + len(joining) > limit:
        raise TooLarge(f"a conversation has at most {limit} members")
    return [await _join(conn, cid, u, user, now_ms) for u in joining]


async def _set_role(
    conn: Conn, cid: str, user: str, role: str, by: str | None, now_ms: int
) -> list[StreamEvent]:
    # The conversation first, then its member rows, as a send takes them:
    # the other order could deadlock with a send by this member.
    await _lock(conn, cid)
    await conn.execute(
        "UPDATE members SET role = $1 WHERE conversation_id = $2 AND user_id = $3",
        role,
        cid,
        user,
    )
    return [
        await _event(
            conn, cid, "member.role_changed", {"user_id": user, "role": role, "by": by}, now_ms
        )
    ]


async def _leave(conn: Conn, cid: str, user: str, by: str | None, now_ms: int) -> list[StreamEvent]:
    role = await conn.fetchval(
        "DELETE FROM members WHERE conversation_id = $1 AND user_id = $2 RETURNING role",
        cid,
        user,
    )
    data = {"user_id": user, "by": by, "reason": "left" if by is None else "removed"}
    out = [await _event(conn, cid, "member.left", data, now_ms)]
    if role == "owner":
        heir = await conn.fetchval(
            "SELECT user_id FROM members WHERE conversation_id = $1 "
            "ORDER BY role = 'admin' DESC, joined_at, user_id LIMIT 1",
            cid,
        )
        if heir is not None:
            out += await _set_role(conn, cid, heir, "owner", None, now_ms)
    return out


async def remove_member(
    conn: Conn, user: str, cid: str, target: str, now_ms: int
) -> list[StreamEvent]:
    if target == user:
        kind, _role = await rows.membership(conn, user, cid)
        if kind == "direct":
            raise Forbidden("you cannot leave a direct conversation; hide it instead")
        await _lock_members(conn, cid)
        return await _leave(conn, cid, user, None, now_ms)
    await _moderate(conn, user, cid, ("owner", "admin"))
    _kind, my_role = await rows.membership(conn, user, cid)
    await _lock_members(conn, cid)
    role = await conn.fetchval(
        "SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2", cid, target
    )
    if role is None:
        raise NotFound("not a member")
    if my_role == "admin" and role != "member":
        raise Forbidden("an admin can remove members only")
    return await _leave(conn, cid, target, user, now_ms)


async def set_role(
    conn: Conn, user: str, cid: str, target: str, role: str, now_ms: int
) -> list[StreamEvent]:
    await _moderate(conn, user, cid, ("owner",))
    current = await conn.fetchval(
        "SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2", cid, target
    )
    if current is None:
        raise NotFound("not a member")
    if target == user:
        raise Invalid("transfer ownership by giving another member the owner role")
    if current == role:
        return []
    out = await _set_role(conn, cid, target, role, user, now_ms)
    if role == "owner":
        out += await _set_role(conn, cid, user, "admin", user, now_ms)
    return out


async def list_rooms(conn: Conn, user: str, limit: int, offset: int) -> list[RoomSummary]:
    found = await conn.fetch(
        "SELECT c.id, c.title, c.created_by, c.created_at, c.last_activity_at, "
        "(SELECT COUNT(*) FROM members x WHERE x.conversation_id = c.id), "
        "EXISTS (SELECT 1 FROM members y WHERE y.conversation_id = c.id AND y.user_id = $1) "
        "FROM conversations c WHERE c.kind = 'room' "
        "ORDER BY c.last_activity_at DESC, c.id LIMIT $2 OFFSET $3",
        user,
        limit,
        offset,
    )
    return [records.room(tuple(row)) for row in found]


async def join_room(conn: Conn, user: str, cid: str, limit: int, now_ms: int) -> list[StreamEvent]:
    if await conn.fetchval("SELECT kind FROM conversations WHERE id = $1", cid) != "room":
        raise NotFound("no such room")
    current = await _lock_members(conn, cid)
    if user in current:
        return []
    if len(current) >= limit:
        raise TooLarge(f"a room has at most {limit} members")
    # Whoever joins an empty room takes it over, so it never lacks an owner.
    return [await _join(conn, cid, user, None, now_ms, "member" if current else "owner")]


async def set_hidden(conn: Conn, user: str, cid: str, hidden: bool) -> None:
    await rows.membership(conn, user, cid)
    await conn.execute(
        "UPDATE members SET hidden = $1 WHERE conversation_id = $2 AND user_id = $3",
        int(hidden),
        cid,
        user,
    )


async def block(conn: Conn, blocker: str, blocked: str, now_ms: int) -> bool:
    status = await conn.execute(
        "INSERT INTO blocks (blocker, blocked, created_at) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        blocker,
        blocked,
        now_ms,
    )
    return bool(rows.changed(status))


async def unblock(conn: Conn, blocker: str, blocked: str) -> bool:
    status = await conn.execute(
        "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2", blocker, blocked
    )
    return bool(rows.changed(status))


async def blocked_by(conn: Conn, user: str) -> list[str]:
    found = await conn.fetch("SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY 1", user)
    return [b for (b,) in found]


async def blockers_of(conn: Conn, user: str) -> list[str]:
    found = await conn.fetch("SELECT blocker FROM blocks WHERE blocked = $1 ORDER BY 1", user)
    return [b for (b,) in found]


async def contacts(conn: Conn, user: str) -> list[str]:
    found = await conn.fetch(
        "SELECT DISTINCT o.user_id FROM members m JOIN conversations c "
        "ON c.id = m.conversation_id AND c.kind != 'room' "
        "JOIN members o ON o.conversation_id = m.conversation_id "
        "WHERE m.user_id = $1 AND o.user_id != $1",
        user,
    )
    return [uid for (uid,) in found]
