"""Users, conversations, membership, rooms and blocks (SQLite). Worker thread."""

from __future__ import annotations

import sqlite3

from hubbub.errors import Forbidden, Invalid, NotFound, TooLarge
from hubbub.ids import new_id
from hubbub.models import (
    Conversation,
    ConversationSummary,
    RoomSummary,
    StreamEvent,
)
from hubbub.store import records
from hubbub.store import sqlite_rows as rows


def direct_key(a: str, b: str) -> str:
    low, high = sorted((a, b))
    return f"{len(low)}:{low}:{high}"


def set_user_name(conn: sqlite3.Connection, user_id: str, name: str, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO users (id, name, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at "
        "WHERE users.name IS NOT excluded.name",
        (user_id, name, now_ms),
    )


def set_last_seen(conn: sqlite3.Connection, user_id: str, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO users (id, updated_at, last_seen) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        (user_id, now_ms, now_ms),
    )


def last_seen(conn: sqlite3.Connection, user_ids: list[str]) -> dict[str, int | None]:
    marks = ",".join("?" * len(user_ids))
    found = dict(
        conn.execute(f"SELECT id, last_seen FROM users WHERE id IN ({marks})", user_ids).fetchall()
    )
    return {u: found.get(u) for u in user_ids}


def _insert(
    conn: sqlite3.Connection,
    kind: str,
    title: str | None,
    key: str | None,
    owner: str,
    others: list[str],
    now_ms: int,
    owner_role: str = "owner",
) -> str:
    cid = new_id("c")
    conn.execute(
        "INSERT INTO conversations (id, kind, title, direct_key, created_by, created_at, "
        "last_activity_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (cid, kind, title, key, owner, now_ms, now_ms),
    )
    conn.executemany(
        "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
        [(cid, owner, owner_role, now_ms)] + [(cid, u, "member", now_ms) for u in others],
    )
    return cid


def _blocked_between(conn: sqlite3.Connection, a: str, b: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM blocks "
            "WHERE (blocker = ? AND blocked = ?) OR (blocker = ? AND blocked = ?)",
            (a, b, b, a),
        ).fetchone()
        is not None
    )


def get_or_create_direct(
    conn: sqlite3.Connection, user_a: str, user_b: str, now_ms: int
) -> tuple[Conversation, bool]:
    key = direct_key(user_a, user_b)
    row = conn.execute("SELECT id FROM conversations WHERE direct_key = ?", (key,)).fetchone()
    if _blocked_between(conn, user_a, user_b):
        raise Forbidden("one of you has blocked the other")
    created = row is None
    cid = (
        _insert(conn, "direct", None, key, user_a, [user_b], now_ms, "member")
        if created
        else row[0]
    )
    conversation = rows.load_conversation(conn, cid)
    assert conversation is not None
    return conversation, created


def create_group(
    conn: sqlite3.Connection, kind: str, owner: str, title: str, members: list[str], now_ms: int
) -> Conversation:
    others = [m for m in dict.fromkeys(members) if m != owner]
    cid = _insert(conn, kind, title, None, owner, others, now_ms)
    conversation = rows.load_conversation(conn, cid)
    assert conversation is not None
    return conversation


def member_ids(conn: sqlite3.Connection, conversation_id: str) -> list[str]:
    return [
        uid
        for (uid,) in conn.execute(
            "SELECT user_id FROM members WHERE conversation_id = ?", (conversation_id,)
        )
    ]


def list_conversations(conn: sqlite3.Connection, user: str) -> list[ConversationSummary]:
    found = conn.execute(
        f"SELECT {records.CONVERSATION_COLUMNS}, m.read_seq, {records.UNREAD} "
        "FROM members m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.user_id = ? AND m.hidden = 0 ORDER BY c.last_activity_at DESC, c.id",
        (user,),
    ).fetchall()
    summaries = []
    for row in found:
        fields = records.conversation_fields(row)
        last = conn.execute(
            f"{records.SELECT_MESSAGE} WHERE m.conversation_id = ? ORDER BY m.seq DESC LIMIT 1",
            (fields["id"],),
        ).fetchone()
        summaries.append(
            ConversationSummary(
                **fields,
                members=rows.members(conn, fields["id"]),
                last_message=None
                if last is None
                else rows.enrich(conn, [records.message(last)], user)[0],
                read_seq=row[7],
                unread_count=row[8],
            )
        )
    return summaries


def _moderate(conn: sqlite3.Connection, user: str, cid: str, roles: tuple[str, ...]) -> str:
    kind, role = rows.membership(conn, user, cid)
    if kind == "direct":
        raise Forbidden("direct conversations have no membership to change")
    if role not in roles:
        raise Forbidden(f"only a {' or '.join(roles)} can do this")
    return kind


def rename(
    conn: sqlite3.Connection, user: str, cid: str, title: str, now_ms: int
) -> list[StreamEvent]:
    _moderate(conn, user, cid, ("owner", "admin"))
    conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, cid))
    data = {"title": title, "by": user}
    seq = rows.add_event(conn, cid, "conversation.renamed", now_ms, data=data)
    return [StreamEvent(conversation_id=cid, seq=seq, type="conversation.renamed", data=data)]


def _join(
    conn: sqlite3.Connection, cid: str, user: str, by: str | None, now_ms: int, role: str = "member"
) -> StreamEvent:
    # A newcomer starts caught up: earlier history is readable, not unread.
    conn.execute(
        "INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq, delivered_seq) "
        "SELECT ?, ?, ?, ?, last_seq, last_seq FROM conversations WHERE id = ?",
        (cid, user, role, now_ms, cid),
    )
    data = {"user_id": user, "role": role, "by": by}
    seq = rows.add_event(conn, cid, "member.joined", now_ms, data=data)
    return StreamEvent(conversation_id=cid, seq=seq, type="member.joined", data=data)


def add_members(
    conn: sqlite3.Connection, user: str, cid: str, new: list[str], limit: int, now_ms: int
) -> list[StreamEvent]:
    _moderate(conn, user, cid, ("owner", "admin"))
    current = set(member_ids(conn, cid))
    joining = [u for u in dict.fromkeys(new) if u not in current]
    if len(current) + len(joining) > limit:
        raise TooLarge(f"a conversation has at most {limit} members")
    return [_join(conn, cid, u, user, now_ms) for u in joining]


def _leave(
    conn: sqlite3.Connection, cid: str, user: str, by: str | None, now_ms: int
) -> list[StreamEvent]:
    (role,) = conn.execute(
        "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?", (cid, user)
    ).fetchone()
    conn.execute("DELETE FROM members WHERE conversation_id = ? AND user_id = ?", (cid, user))
    data = {"user_id": user, "by": by, "reason": "left" if by is None else "removed"}
    seq = rows.add_event(conn, cid, "member.left", now_ms, data=data)
    out = [StreamEvent(conversation_id=cid, seq=seq, type="member.left", data=data)]
    if role == "owner":
        # Ownership passes to the longest-standing admin, else member.
        heir = conn.execute(
            "SELECT user_id FROM members WHERE conversation_id = ? "
            "ORDER BY role = 'admin' DESC, joined_at, user_id LIMIT 1",
            (cid,),
        ).fetchone()
        if heir is not None:
            out += _set_role(conn, cid, heir[0], "owner", None, now_ms)
    return out


def _set_role(
    conn: sqlite3.Connection, cid: str, user: str, role: str, by: str | None, now_ms: int
) -> list[StreamEvent]:
    conn.execute(
        "UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?", (role, cid, user)
    )
    data = {"user_id": user, "role": role, "by": by}
    seq = rows.add_event(conn, cid, "member.role_changed", now_ms, data=data)
    return [StreamEvent(conversation_id=cid, seq=seq, type="member.role_changed", data=data)]


def remove_member(
    conn: sqlite3.Connection, user: str, cid: str, target: str, now_ms: int
) -> list[StreamEvent]:
    if target == user:
        kind, _role = rows.membership(conn, user, cid)
        if kind == "direct":
            raise Forbidden("you cannot leave a direct conversation; hide it instead")
        return _leave(conn, cid, user, None, now_ms)
    _moderate(conn, user, cid, ("owner", "admin"))
    _kind, my_role = rows.membership(conn, user, cid)
    row = conn.execute(
        "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?", (cid, target)
    ).fetchone()
    if row is None:
        raise NotFound("not a member")
    if my_role == "admin" and row[0] != "member":
        raise Forbidden("an admin can remove members only")
    return _leave(conn, cid, target, user, now_ms)


def set_role(
    conn: sqlite3.Connection, user: str, cid: str, target: str, role: str, now_ms: int
) -> list[StreamEvent]:
    _moderate(conn, user, cid, ("owner",))
    row = conn.execute(
        "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?", (cid, target)
    ).fetchone()
    if row is None:
        raise NotFound("not a member")
    if target == user:
        raise Invalid("transfer ownership by giving another member the owner role")
    if row[0] == role:
        return []
    out = _set_role(conn, cid, target, role, user, now_ms)
    if role == "owner":  # a transfer: the previous owner becomes an admin
        out += _set_role(conn, cid, user, "admin", user, now_ms)
    return out


def list_rooms(conn: sqlite3.Connection, user: str, limit: int, offset: int) -> list[RoomSummary]:
    found = conn.execute(
        "SELECT c.id, c.title, c.created_by, c.created_at, c.last_activity_at, "
        "(SELECT COUNT(*) FROM members x WHERE x.conversation_id = c.id), "
        "EXISTS (SELECT 1 FROM members y WHERE y.conversation_id = c.id AND y.user_id = ?) "
        "FROM conversations c WHERE c.kind = 'room' "
        "ORDER BY c.last_activity_at DESC, c.id LIMIT ? OFFSET ?",
        (user, limit, offset),
    ).fetchall()
    return [records.room(tuple(row)) for row in found]


def join_room(
    conn: sqlite3.Connection, user: str, cid: str, limit: int, now_ms: int
) -> list[StreamEvent]:
    row = conn.execute("SELECT kind FROM conversations WHERE id = ?", (cid,)).fetchone()
    if row is None or row[0] != "room":
        raise NotFound("no such room")
    current = member_ids(conn, cid)
    if user in current:
        return []
    if len(current) >= limit:
        raise TooLarge(f"a room has at most {limit} members")
    # Whoever joins an empty room takes it over, so it never lacks an owner.
    return [_join(conn, cid, user, None, now_ms, "member" if current else "owner")]


def set_hidden(conn: sqlite3.Connection, user: str, cid: str, hidden: bool) -> None:
    rows.membership(conn, user, cid)
    conn.execute(
        "UPDATE members SET hidden = ? WHERE conversation_id = ? AND user_id = ?",
        (int(hidden), cid, user),
    )


def block(conn: sqlite3.Connection, blocker: str, blocked: str, now_ms: int) -> bool:
    return bool(
        conn.execute(
            "INSERT INTO blocks (blocker, blocked, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (blocker, blocked, now_ms),
        ).rowcount
    )


def unblock(conn: sqlite3.Connection, blocker: str, blocked: str) -> bool:
    return bool(
        conn.execute(
            "DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (blocker, blocked)
        ).rowcount
    )


def blocked_by(conn: sqlite3.Connection, user: str) -> list[str]:
    """Users this user has blocked."""
    found = conn.execute("SELECT blocked FROM blocks WHERE blocker = ? ORDER BY 1", (user,))
    return [b for (b,) in found]


def blockers_of(conn: sqlite3.Connection, user: str) -> list[str]:
    """Users who have blocked this user."""
    found = conn.execute("SELECT blocker FROM blocks WHERE blocked = ? ORDER BY 1", (user,))
    return [b for (b,) in found]


def contacts(conn: sqlite3.Connection, user: str) -> list[str]:
    """Users sharing a direct conversation or group (not a room) with this user."""
    return [
        uid
        for (uid,) in conn.execute(
            "SELECT DISTINCT o.user_id FROM members m JOIN conversations c "
            "ON c.id = m.conversation_id AND c.kind != 'room' "
            "JOIN members o ON o.conversation_id = m.conversation_id "
            "WHERE m.user_id = ? AND o.user_id != ?",
            (user, user),
        )
    ]
