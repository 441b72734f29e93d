"""Loading and checks shared by the PostgreSQL query modules."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from hubbub.errors import Forbidden, NotFound
from hubbub.models import Attachment, Conversation, Member, Message, Reaction
from hubbub.store import records

Conn: TypeAlias = asyncpg.Connection


def changed(status: str) -> int:
    """Rows touched, from a status such as ``UPDATE 1``."""
    return int(status.rsplit(" ", 1)[-1])


async def load_message(conn: Conn, message_id: str, viewer: str | None = None) -> Message | None:
    row = await conn.fetchrow(f"{records.SELECT_MESSAGE} WHERE m.id = $1", message_id)
    return None if row is None else (await enrich(conn, [records.message(tuple(row))], viewer))[0]


async def enrich(conn: Conn, messages: list[Message], viewer: str | None = None) -> list[Message]:
    """Fill in attachments and reaction counts (``me`` relative to ``viewer``)."""
    by_id = {m.id: m for m in messages if m.deleted_at is None}
    if not by_id:
        return messages
    ids = list(by_id)
    for mid, uid, name, ctype, size in await conn.fetch(
        "SELECT a.message_id, u.id, u.name, u.content_type, u.size FROM message_attachments a "
        "JOIN uploads u ON u.id = a.upload_id WHERE a.message_id = ANY($1::text[]) "
        "ORDER BY a.message_id, a.position",
        ids,
    ):
        by_id[mid].attachments.append(
            Attachment(
                id=uid, name=name, content_type=ctype, size=size, url=records.upload_url(uid)
            )
        )
    for mid, emoji, count, mine in await conn.fetch(
        "SELECT message_id, emoji, COUNT(*), BOOL_OR(user_id = $1) FROM reactions "
        "WHERE message_id = ANY($2::text[]) GROUP BY message_id, emoji ORDER BY MIN(created_at)",
        viewer,
        ids,
    ):
        by_id[mid].reactions.append(Reaction(emoji=emoji, count=count, me=bool(mine)))
    return messages


async def members(conn: Conn, conversation_id: str) -> list[Member]:
    found = await conn.fetch(
        "SELECT m.user_id, u.name, m.role, m.joined_at, m.read_seq, m.delivered_seq "
        "FROM members m LEFT JOIN users u ON u.id = m.user_id WHERE m.conversation_id = $1 "
        "ORDER BY m.joined_at, m.user_id",
        conversation_id,
    )
    return [records.member(tuple(row)) for row in found]


async def load_conversation(conn: Conn, conversation_id: str) -> Conversation | None:
    row = await conn.fetchrow(
        f"SELECT {records.CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1",
        conversation_id,
    )
    if row is None:
        return None
    fields = records.conversation_fields(tuple(row))
    return Conversation(**fields, members=await members(conn, conversation_id))


async def membership(conn: Conn, user: str, conversation_id: str) -> tuple[str, str]:
    """``(kind, role)`` of the user in the conversation; Forbidden/NotFound otherwise."""
    row = await conn.fetchrow(
        "SELECT c.kind, m.role FROM conversations c LEFT JOIN members m "
        "ON m.conversation_id = c.id AND m.user_id = $1 WHERE c.id = $2",
        user,
        conversation_id,
    )
    if row is None:
        raise NotFound("no such conversation")
    if row[1] is None:
        raise Forbidden("you are not a member of this conversation")
    return row[0], row[1]


async def direct_blocked(conn: Conn, user: str, conversation_id: str) -> bool:
    return (
        await conn.fetchval(
            "SELECT 1 FROM members o JOIN blocks b ON (b.blocker = o.user_id AND b.blocked = $1) "
            "OR (b.blocker = $1 AND b.blocked = o.user_id) "
            "WHERE o.conversation_id = $2 AND o.user_id != $1",
            user,
            conversation_id,
        )
        is not None
    )


async def add_event(
    conn: Conn,
    conversation_id: str,
    kind: str,
    now_ms: int,
    *,
    message_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append an event to the conversation's stream; returns its seq.

    The UPDATE takes the conversation's row lock until commit, so concurrent
    writers in any process get consecutive seqs, and a rolled-back writer
    gives its seq back.
    """
    seq: int = await conn.fetchval(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
        conversation_id,
    )
    await conn.execute(
        "INSERT INTO events (conversation_id, seq, type, message_id, data, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        conversation_id,
        seq,
        kind,
        message_id,
        records.event_data(data),
        now_ms,
    )
    return seq
