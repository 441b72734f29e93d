"""Loading and checks shared by the SQLite query modules."""

from __future__ import annotations

import sqlite3
from typing import Any

from hubbub.errors import Forbidden, NotFound
from hubbub.models import (
    Attachment,
    Conversation,
    Member,
    Message,
    Reaction,
)
from hubbub.store import records


def load_message(
    conn: sqlite3.Connection, message_id: str, viewer: str | None = None
) -> Message | None:
    row = conn.execute(
        f"{records.SELECT_MESSAGE} WHERE m.id = ?",
        (message_id,),
    ).fetchone()
    return None if row is None else enrich(conn, [records.message(row)], viewer)[0]


def enrich(
    conn: sqlite3.Connection, messages: list[Message], viewer: str | None = None
) -> list[Message]:
    """Fill in attachments and reaction counts (``me`` relative to ``viewer``)."""
    live = [m for m in messages if m.deleted_at is None]
    if not live:
        return messages
    by_id = {m.id: m for m in live}
    marks = ",".join("?" * len(by_id))
    for mid, uid, name, ctype, size in conn.execute(
        f"SELECT a.message_id, u.id, u.name, u.content_type, u.size FROM message_attachments a "
        f"JOIN uploads u ON u.id = a.upload_id WHERE a.message_id IN ({marks}) "
        "ORDER BY a.message_id, a.position",
        list(by_id),
    ):
        by_id[mid].attachments.append(
            Attachment(
                id=uid, name=name, content_type=ctype, size=size, url=records.upload_url(uid)
            )
        )
    for mid, emoji, count, mine in conn.execute(
        f"SELECT message_id, emoji, COUNT(*), MAX(user_id = ?) FROM reactions "
        f"WHERE message_id IN ({marks}) GROUP BY message_id, emoji ORDER BY MIN(created_at)",
        [viewer, *by_id],
    ):
        by_id[mid].reactions.append(Reaction(emoji=emoji, count=count, me=bool(mine)))
    return messages


def members(conn: sqlite3.Connection, conversation_id: str) -> list[Member]:
    found = conn.execute(
        "SELECT m.user_id, u.name, m.role, m.joined_at, m.read_seq, m.delivered_seq "
        "FROM members m LEFT JOIN users u ON u.id = m.user_id WHERE m.conversation_id = ? "
        "ORDER BY m.joined_at, m.user_id",
        (conversation_id,),
    ).fetchall()
    return [records.member(tuple(row)) for row in found]


def load_conversation(conn: sqlite3.Connection, conversation_id: str) -> Conversation | None:
    row = conn.execute(
        f"SELECT {records.CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?",
        (conversation_id,),
    ).fetchone()
    if row is None:
        return None
    return Conversation(**records.conversation_fields(row), members=members(conn, conversation_id))


def membership(conn: sqlite3.Connection, user: str, conversation_id: str) -> tuple[str, str]:
    """``(kind, role)`` of the user in the conversation; Forbidden/NotFound otherwise."""
    row = conn.execute(
        "SELECT c.kind, m.role FROM conversations c LEFT JOIN members m "
        "ON m.conversation_id = c.id AND m.user_id = ? WHERE c.id = ?",
        (user, conversation_id),
    ).fetchone()
    if row is None:
        raise NotFound("no such conversation")
    if row[1] is None:
        raise Forbidden("you are not a member of this conversation")
    return row[0], row[1]


def direct_blocked(conn: sqlite3.Connection, user: str, conversation_id: str) -> bool:
    """Whether either side of a direct conversation has blocked the other."""
    return (
        conn.execute(
            "SELECT 1 FROM members o JOIN blocks b ON (b.blocker = o.user_id AND b.blocked = ?) "
            "OR (b.blocker = ? AND b.blocked = o.user_id) "
            "WHERE o.conversation_id = ? AND o.user_id != ?",
            (user, user, conversation_id, user),
        ).fetchone()
        is not None
    )


def next_seq(conn: sqlite3.Connection, conversation_id: str) -> int:
    (seq,) = conn.execute(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
        (conversation_id,),
    ).fetchone()
    return int(seq)


def add_event(
    conn: sqlite3.Connection,
    conversation_id: str,
    kind: str,
    now_ms: int,
    *,
    message_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append an event to the conversation's stream; returns its seq."""
    seq = next_seq(conn, conversation_id)
    conn.execute(
        "INSERT INTO events (conversation_id, seq, type, message_id, data, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            conversation_id,
            seq,
            kind,
            message_id,
            records.event_data(data),
            now_ms,
        ),
    )
    return seq
