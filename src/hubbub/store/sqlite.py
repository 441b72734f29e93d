"""The embedded default store: one SQLite file, written by one thread."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from hubbub.clock import iso_ms
from hubbub.errors import Conflict, Forbidden, NotFound
from hubbub.ids import new_id
from hubbub.service.models import (
    Conversation,
    ConversationSummary,
    Member,
    Message,
    Page,
    Replay,
    SendItem,
)
from hubbub.store.base import Appended
from hubbub.store.sqlite_worker import SQLiteWorker

SCHEMA_VERSION = 1
MESSAGE_COLUMNS = "id, conversation_id, seq, sender_id, kind, body, client_msg_id, created_at"
CONVERSATION_COLUMNS = "id, kind, title, created_by, created_at, last_seq, last_activity_at"


def direct_key(a: str, b: str) -> str:
    low, high = sorted((a, b))
    return f"{len(low)}:{low}:{high}"


class SQLiteStore:
    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._worker = SQLiteWorker(path, synchronous)

    async def open(self) -> None:
        await self._worker.start()
        await self._worker.call(_migrate)

    async def close(self) -> None:
        await self._worker.stop()

    async def ping(self) -> None:
        await self._worker.call(lambda c: c.execute("SELECT 1").fetchone())

    async def set_user_name(self, user_id: str, name: str, now_ms: int) -> None:
        await self._worker.call(_set_user_name, user_id, name, now_ms)

    async def get_or_create_direct(
        self, user_a: str, user_b: str, now_ms: int
    ) -> tuple[Conversation, bool]:
        return await self._worker.call(_get_or_create_direct, user_a, user_b, now_ms)

    async def create_group(
        self, owner: str, title: str, members: list[str], now_ms: int
    ) -> Conversation:
        return await self._worker.call(_create_group, owner, title, members, now_ms)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        return await self._worker.call(_load_conversation, conversation_id)

    async def member_ids(self, conversation_id: str) -> list[str]:
        return await self._worker.call(_member_ids, conversation_id)

    async def append_messages(
        self, sender: str, items: list[SendItem], now_ms: int
    ) -> list[Appended]:
        return await self._worker.call(_append_messages, sender, items, now_ms)

    async def list_messages(
        self,
        user: str,
        conversation_id: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> Page:
        return await self._worker.call(_list_messages, user, conversation_id, before, after, limit)

    async def list_conversations(self, user: str) -> list[ConversationSummary]:
        return await self._worker.call(_list_conversations, user)

    async def replay(self, user: str, cursors: dict[str, int], limit: int) -> list[Replay]:
        return await self._worker.call(_replay, user, cursors, limit)


# Everything below runs on the worker thread, inside a transaction.


def _migrate(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this build ({SCHEMA_VERSION})"
        )
    if version == 0:
        script = resources.files("hubbub.store").joinpath("sqlite_schema.sql").read_text()
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _set_user_name(conn: sqlite3.Connection, user_id: str, name: str, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO users (id, name, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at "
        "WHERE users.name IS NOT excluded.name",
        (user_id, name, now_ms),
    )


def _message(row: tuple[object, ...]) -> Message:
    mid, cid, seq, sender, kind, body, client_msg_id, created = row
    return Message(
        id=str(mid),
        conversation_id=str(cid),
        seq=int(seq),  # type: ignore[call-overload]
        sender_id=str(sender),
        kind=str(kind),
        body=str(body),
        client_msg_id=None if client_msg_id is None else str(client_msg_id),
        created_at=iso_ms(int(created)),  # type: ignore[call-overload]
    )


def _members(conn: sqlite3.Connection, conversation_id: str) -> list[Member]:
    rows = conn.execute(
        "SELECT m.user_id, u.name, m.role, m.joined_at FROM members m "
        "LEFT JOIN users u ON u.id = m.user_id WHERE m.conversation_id = ? "
        "ORDER BY m.joined_at, m.user_id",
        (conversation_id,),
    ).fetchall()
    return [
        Member(user_id=uid, name=name, role=role, joined_at=iso_ms(joined))
        for uid, name, role, joined in rows
    ]


def _load_conversation(conn: sqlite3.Connection, conversation_id: str) -> Conversation | None:
    row = conn.execute(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
    ).fetchone()
    if row is None:
        return None
    cid, kind, title, created_by, created_at, last_seq, activity = row
    return Conversation(
        id=cid,
        kind=kind,
        title=title,
        created_by=created_by,
        created_at=iso_ms(created_at),
        last_seq=last_seq,
        last_activity_at=iso_ms(activity),
        members=_members(conn, cid),
    )


def _member_ids(conn: sqlite3.Connection, conversation_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT user_id FROM members WHERE conversation_id = ?", (conversation_id,)
    ).fetchall()
    return [uid for (uid,) in rows]


def _insert_conversation(
    conn: sqlite3.Connection,
    kind: str,
    title: str | None,
    key: str | None,
    owner: str,
    members: list[str],
    now_ms: int,
) -> str:
    cid = new_id("c")
    conn.execute(
        "INSERT INTO conversations (id, kind, title, direct_key, created_by, created_at, "
        "last_activity_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (cid, kind, title, key, owner, now_ms, now_ms),
    )
    conn.executemany(
        "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
        [(cid, uid, "owner" if uid == owner else "member", now_ms) for uid in members],
    )
    return cid


def _get_or_create_direct(
    conn: sqlite3.Connection, user_a: str, user_b: str, now_ms: int
) -> tuple[Conversation, bool]:
    key = direct_key(user_a, user_b)
    row = conn.execute("SELECT id FROM conversations WHERE direct_key = ?", (key,)).fetchone()
    created = row is None
    if created:
        cid = _insert_conversation(conn, "direct", None, key, user_a, [user_a, user_b], now_ms)
        # Both sides of a direct conversation are equals.
        conn.execute("UPDATE members SET role = 'member' WHERE conversation_id = ?", (cid,))
    else:
        cid = row[0]
    conversation = _load_conversation(conn, cid)
    assert conversation is not None
    return conversation, created


def _create_group(
    conn: sqlite3.Connection, owner: str, title: str, members: list[str], now_ms: int
) -> Conversation:
    everyone = [owner, *(m for m in dict.fromkeys(members) if m != owner)]
    cid = _insert_conversation(conn, "group", title, None, owner, everyone, now_ms)
    conversation = _load_conversation(conn, cid)
    assert conversation is not None
    return conversation


def _check_member(conn: sqlite3.Connection, user: str, conversation_id: str) -> None:
    if conn.execute(
        "SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?", (conversation_id, user)
    ).fetchone():
        return
    if conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone():
        raise Forbidden("you are not a member of this conversation")
    raise NotFound("no such conversation")


def _append_one(conn: sqlite3.Connection, sender: str, item: SendItem, now_ms: int) -> Appended:
    cid = item.conversation_id
    try:
        _check_member(conn, sender, cid)
    except (Forbidden, NotFound) as exc:
        return exc
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages "
        "WHERE sender_id = ? AND conversation_id = ? AND client_msg_id = ?",
        (sender, cid, item.client_msg_id),
    ).fetchone()
    if row is not None:
        return _message(row), False
    (seq,) = conn.execute(
        "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = ? "
        "WHERE id = ? RETURNING last_seq",
        (now_ms, cid),
    ).fetchone()
    message = Message(
        id=new_id("m"),
        conversation_id=cid,
        seq=seq,
        sender_id=sender,
        kind=item.kind,
        body=item.body,
        client_msg_id=item.client_msg_id,
        created_at=iso_ms(now_ms),
    )
    try:
        conn.execute(
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (message.id, cid, seq, sender, item.kind, item.body, item.client_msg_id, now_ms),
        )
    except sqlite3.IntegrityError as exc:  # pragma: no cover - guarded by the SELECT above
        raise Conflict(f"message conflicts with a stored one: {exc}") from None
    # Your own message is read by you: it never counts as unread.
    conn.execute(
        "UPDATE members SET read_seq = ? WHERE conversation_id = ? AND user_id = ? "
        "AND read_seq < ?",
        (seq, cid, sender, seq),
    )
    return message, True


def _append_messages(
    conn: sqlite3.Connection, sender: str, items: list[SendItem], now_ms: int
) -> list[Appended]:
    return [_append_one(conn, sender, item, now_ms) for item in items]


def _list_messages(
    conn: sqlite3.Connection,
    user: str,
    conversation_id: str,
    before: int | None,
    after: int | None,
    limit: int,
) -> Page:
    _check_member(conn, user, conversation_id)
    if before is not None and after is not None and after >= before - 1:
        return Page(messages=[], has_more=False)
    select = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
    if after is not None and before is None:
        rows = conn.execute(
            f"{select} AND seq > ? ORDER BY seq ASC LIMIT ?",
            (conversation_id, after, limit + 1),
        ).fetchall()
        has_more = len(rows) > limit
        return Page(messages=[_message(r) for r in rows[:limit]], has_more=has_more)
    clauses, args = "", [conversation_id]
    if before is not None:
        clauses += " AND seq < ?"
        args.append(before)  # type: ignore[arg-type]
    if after is not None:
        clauses += " AND seq > ?"
        args.append(after)  # type: ignore[arg-type]
    rows = conn.execute(
        f"{select}{clauses} ORDER BY seq DESC LIMIT ?", (*args, limit + 1)
    ).fetchall()
    has_more = len(rows) > limit
    return Page(messages=[_message(r) for r in reversed(rows[:limit])], has_more=has_more)


def _list_conversations(conn: sqlite3.Connection, user: str) -> list[ConversationSummary]:
    rows = conn.execute(
        f"SELECT {', '.join('c.' + c.strip() for c in CONVERSATION_COLUMNS.split(','))}, "
        "m.read_seq, (SELECT COUNT(*) FROM messages x WHERE x.conversation_id = c.id "
        "AND x.seq > m.read_seq AND x.sender_id != m.user_id) "
        "FROM members m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.user_id = ? ORDER BY c.last_activity_at DESC, c.id",
        (user,),
    ).fetchall()
    summaries = []
    for cid, kind, title, created_by, created_at, last_seq, activity, read_seq, unread in rows:
        last = conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq = ?",
            (cid, last_seq),
        ).fetchone()
        summaries.append(
            ConversationSummary(
                id=cid,
                kind=kind,
                title=title,
                created_by=created_by,
                created_at=iso_ms(created_at),
                last_seq=last_seq,
                last_activity_at=iso_ms(activity),
                members=_members(conn, cid),
                last_message=None if last is None else _message(last),
                unread_count=unread,
                read_seq=read_seq,
            )
        )
    return summaries


def _replay(
    conn: sqlite3.Connection, user: str, cursors: dict[str, int], limit: int
) -> list[Replay]:
    replays = []
    for cid, cursor in cursors.items():
        row = conn.execute(
            "SELECT c.last_seq FROM conversations c JOIN members m "
            "ON m.conversation_id = c.id AND m.user_id = ? WHERE c.id = ?",
            (user, cid),
        ).fetchone()
        if row is None:
            replays.append(Replay(conversation_id=cid, status="unavailable", last_seq=0, events=[]))
            continue
        (last_seq,) = row
        if last_seq - cursor > limit:
            replays.append(
                Replay(conversation_id=cid, status="too_far_behind", last_seq=last_seq, events=[])
            )
            continue
        events = [
            _message(r)
            for r in conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq > ? "
                "ORDER BY seq ASC",
                (cid, cursor),
            )
        ]
        replays.append(Replay(conversation_id=cid, status="ok", last_seq=last_seq, events=events))
    return replays
