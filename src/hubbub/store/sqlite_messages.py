"""Messages, the event stream and receipts (SQLite). Runs on the worker thread."""

from __future__ import annotations

import sqlite3

from hubbub.clock import iso_ms
from hubbub.errors import Forbidden, HubbubError, Invalid, NotFound
from hubbub.ids import new_id
from hubbub.models import (
    Attachment,
    Message,
    Page,
    Receipt,
    Replay,
    SearchPage,
    SendItem,
    StreamEvent,
    Upload,
    Version,
)
from hubbub.store import records
from hubbub.store import sqlite_rows as rows
from hubbub.store.base import Appended

MODERATORS = ("owner", "admin")
MAX_REACTIONS_PER_USER = 20
MAX_POINTERS = 256


def _check_attachments(conn: sqlite3.Connection, sender: str, item: SendItem) -> list[Attachment]:
    if not item.attachments:
        return []
    marks = ",".join("?" * len(item.attachments))
    found = {
        uid: (name, ctype, size)
        for uid, name, ctype, size in conn.execute(
            f"SELECT id, name, content_type, size FROM uploads "
            f"WHERE owner_id = ? AND id IN ({marks})",
            (sender, *item.attachments),
        )
    }
    return records.attachments(item, found)


def _append_one(
    conn: sqlite3.Connection, sender: str, item: SendItem, now_ms: int, as_server: bool
) -> Appended:
    cid = item.conversation_id
    # A retry is recognised first: its sender gets the original back even if
    # the conversation has changed since (left, blocked).
    row = conn.execute(
        f"{records.SELECT_MESSAGE} "
        "WHERE m.sender_id = ? AND m.conversation_id = ? AND m.client_msg_id = ?",
        (sender, cid, item.client_msg_id),
    ).fetchone()
    if row is not None:
        return rows.enrich(conn, [records.message(row)])[0], False
    try:
        if as_server:
            if conn.execute("SELECT 1 FROM conversations WHERE id = ?", (cid,)).fetchone() is None:
                raise NotFound("no such conversation")
        else:
            kind, _role = rows.membership(conn, sender, cid)
            if kind == "direct" and rows.direct_blocked(conn, sender, cid):
                raise Forbidden("this direct conversation is blocked")
        attachments = _check_attachments(conn, sender, item)
        if item.reply_to is not None:
            parent = conn.execute(
                "SELECT conversation_id FROM messages WHERE id = ?", (item.reply_to,)
            ).fetchone()
            if parent is None or parent[0] != cid:
                raise Invalid("reply_to must be a message of the same conversation")
    except HubbubError as exc:
        return exc
    mid = new_id("m")
    (seq,) = conn.execute(
        "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = ? "
        "WHERE id = ? RETURNING last_seq",
        (now_ms, cid),
    ).fetchone()
    conn.execute(
        "INSERT INTO events (conversation_id, seq, type, message_id, created_at) "
        "VALUES (?, ?, 'message.new', ?, ?)",
        (cid, seq, mid, now_ms),
    )
    conn.execute(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_msg_id, "
        "reply_to, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (mid, cid, seq, sender, item.kind, item.body, item.client_msg_id, item.reply_to, now_ms),
    )
    if attachments:
        conn.executemany(
            "INSERT INTO message_attachments (message_id, upload_id, position) VALUES (?, ?, ?)",
            [(mid, a.id, i) for i, a in enumerate(attachments)],
        )
    # Your own message is read by you; a hidden conversation reappears. Two
    # statements, each on an index: one that filtered on "sender or hidden"
    # would read every member of the conversation.
    conn.execute(
        "UPDATE members SET read_seq = ?1, delivered_seq = MAX(delivered_seq, ?1), hidden = 0 "
        "WHERE conversation_id = ?2 AND user_id = ?3",
        (seq, cid, sender),
    )
    conn.execute(
        "UPDATE members INDEXED BY members_hidden SET hidden = 0 "
        "WHERE conversation_id = ? AND hidden = 1",
        (cid,),
    )
    name = conn.execute("SELECT name FROM users WHERE id = ?", (sender,)).fetchone()
    message = Message(
        id=mid,
        conversation_id=cid,
        seq=seq,
        sender_id=sender,
        sender_name=None if name is None else name[0],
        kind=item.kind,
        body=item.body,
        client_msg_id=item.client_msg_id,
        reply_to=item.reply_to,
        created_at=iso_ms(now_ms),
        attachments=attachments,
    )
    return message, True


def append_messages(
    conn: sqlite3.Connection, sender: str, items: list[SendItem], now_ms: int, as_server: bool
) -> list[Appended]:
    return [_append_one(conn, sender, item, now_ms, as_server) for item in items]


def _editable(conn: sqlite3.Connection, user: str, message_id: str) -> tuple[Message, str]:
    message = rows.load_message(conn, message_id)
    if message is None:
        raise NotFound("no such message")
    _kind, role = rows.membership(conn, user, message.conversation_id)
    if message.deleted_at is not None:
        raise NotFound("the message was deleted")
    return message, role


def edit_message(
    conn: sqlite3.Connection, user: str, message_id: str, body: str, now_ms: int
) -> StreamEvent:
    message, _role = _editable(conn, user, message_id)
    if message.sender_id != user:
        raise Forbidden("only the sender can edit a message")
    if message.kind == "system":
        raise Forbidden("system messages cannot be edited")
    (version,) = conn.execute(
        "SELECT COUNT(*) FROM message_versions WHERE message_id = ?", (message_id,)
    ).fetchone()
    previous_at = conn.execute(
        "SELECT COALESCE(edited_at, created_at) FROM messages WHERE id = ?", (message_id,)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO message_versions (message_id, version, body, written_at) VALUES (?, ?, ?, ?)",
        (message_id, version + 1, message.body, previous_at),
    )
    conn.execute(
        "UPDATE messages SET body = ?, edited_at = ? WHERE id = ?", (body, now_ms, message_id)
    )
    cid = message.conversation_id
    seq = rows.add_event(conn, cid, "message.edited", now_ms, message_id=message_id)
    return StreamEvent(
        conversation_id=cid,
        seq=seq,
        type="message.edited",
        message=rows.load_message(conn, message_id),
    )


def delete_message(
    conn: sqlite3.Connection, user: str, message_id: str, now_ms: int
) -> StreamEvent:
    message, role = _editable(conn, user, message_id)
    cid = message.conversation_id
    kind = conn.execute("SELECT kind FROM conversations WHERE id = ?", (cid,)).fetchone()[0]
    if message.sender_id != user and not (kind != "direct" and role in MODERATORS):
        raise Forbidden("only the sender or a group owner or admin can delete a message")
    # A tombstone: the body and its earlier versions are gone for good.
    conn.execute(
        "UPDATE messages SET body = '', deleted_at = ?, deleted_by = ? WHERE id = ?",
        (now_ms, user, message_id),
    )
    conn.execute("DELETE FROM message_versions WHERE message_id = ?", (message_id,))
    seq = rows.add_event(
        conn, cid, "message.deleted", now_ms, message_id=message_id, data={"deleted_by": user}
    )
    return StreamEvent(
        conversation_id=cid,
        seq=seq,
        type="message.deleted",
        message=rows.load_message(conn, message_id),
        data={"deleted_by": user},
    )


def message_versions(conn: sqlite3.Connection, user: str, message_id: str) -> list[Version]:
    message = rows.load_message(conn, message_id)
    if message is None:
        raise NotFound("no such message")
    rows.membership(conn, user, message.conversation_id)
    versions = [
        Version(body=body, written_at=iso_ms(at))
        for body, at in conn.execute(
            "SELECT body, written_at FROM message_versions WHERE message_id = ? ORDER BY version",
            (message_id,),
        )
    ]
    if message.deleted_at is None:
        versions.append(
            Version(body=message.body, written_at=message.edited_at or message.created_at)
        )
    return versions


def get_message(conn: sqlite3.Connection, user: str, message_id: str) -> Message:
    message = rows.load_message(conn, message_id, user)
    if message is None:
        raise NotFound("no such message")
    rows.membership(conn, user, message.conversation_id)
    return message


def list_messages(
    conn: sqlite3.Connection,
    user: str,
    conversation_id: str,
    before: int | None,
    after: int | None,
    limit: int,
) -> Page:
    rows.membership(conn, user, conversation_id)
    page = _page(conn, user, conversation_id, before, after, limit)
    page.receipts = _pointers(conn, conversation_id)
    return page


def _pointers(conn: sqlite3.Connection, conversation_id: str) -> list[Receipt]:
    """Members' read and delivered pointers, for conversations small enough to list."""
    found = conn.execute(
        "SELECT user_id, read_seq, delivered_seq FROM members WHERE conversation_id = ? "
        "ORDER BY user_id LIMIT ?",
        (conversation_id, MAX_POINTERS + 1),
    ).fetchall()
    if len(found) > MAX_POINTERS:
        return []
    return [
        Receipt(conversation_id=conversation_id, user_id=uid, read_seq=read, delivered_seq=dlv)
        for uid, read, dlv in found
    ]


def _page(
    conn: sqlite3.Connection,
    user: str,
    conversation_id: str,
    before: int | None,
    after: int | None,
    limit: int,
) -> Page:
    if before is not None and after is not None and after >= before - 1:
        return Page(messages=[], has_more=False)
    select = f"{records.SELECT_MESSAGE} WHERE m.conversation_id = ?"
    if after is not None and before is None:
        found = conn.execute(
            f"{select} AND m.seq > ? ORDER BY m.seq ASC LIMIT ?",
            (conversation_id, after, limit + 1),
        ).fetchall()
        page = rows.enrich(conn, [records.message(r) for r in found[:limit]], user)
        return Page(messages=page, has_more=len(found) > limit)
    clauses, args = "", [conversation_id]
    if before is not None:
        clauses += " AND m.seq < ?"
        args.append(before)  # type: ignore[arg-type]
    if after is not None:
        clauses += " AND m.seq > ?"
        args.append(after)  # type: ignore[arg-type]
    found = conn.execute(
        f"{select}{clauses} ORDER BY m.seq DESC LIMIT ?", (*args, limit + 1)
    ).fetchall()
    page = rows.enrich(conn, [records.message(r) for r in reversed(found[:limit])], user)
    return Page(messages=page, has_more=len(found) > limit)


def replay(
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
        events = events_after(conn, cid, cursor, limit, user)
        replays.append(Replay(conversation_id=cid, status="ok", last_seq=last_seq, events=events))
    return replays


def events_after(
    conn: sqlite3.Connection, cid: str, after: int, limit: int, viewer: str | None = None
) -> list[StreamEvent]:
    """Stream events with seq > ``after``, oldest first (no access check: callers do it)."""
    found = conn.execute(
        f"SELECT e.seq, e.type, e.data, {records.MESSAGE_COLUMNS} FROM events e "
        "LEFT JOIN messages m ON m.id = e.message_id LEFT JOIN users u ON u.id = m.sender_id "
        "WHERE e.conversation_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
        (cid, after, limit),
    ).fetchall()
    events = [
        records.stream_event(cid, seq, kind, None if r[0] is None else records.message(r), data)
        for seq, kind, data, *r in found
    ]
    rows.enrich(conn, [e.message for e in events if e.message is not None], viewer)
    return events


def mark(
    conn: sqlite3.Connection, user: str, conversation_id: str, kind: str, seq: int
) -> Receipt | None:
    """Move the user's read or delivered pointer forward; None when it did not move."""
    rows.membership(conn, user, conversation_id)
    (last_seq,) = conn.execute(
        "SELECT last_seq FROM conversations WHERE id = ?", (conversation_id,)
    ).fetchone()
    seq = min(seq, last_seq)
    if kind == "read":
        moved = conn.execute(
            "UPDATE members SET read_seq = ?, delivered_seq = MAX(delivered_seq, ?) "
            "WHERE conversation_id = ? AND user_id = ? AND read_seq < ?",
            (seq, seq, conversation_id, user, seq),
        ).rowcount
    else:
        moved = conn.execute(
            "UPDATE members SET delivered_seq = ? "
            "WHERE conversation_id = ? AND user_id = ? AND delivered_seq < ?",
            (seq, conversation_id, user, seq),
        ).rowcount
    if not moved:
        return None
    read_seq, delivered_seq = conn.execute(
        "SELECT read_seq, delivered_seq FROM members WHERE conversation_id = ? AND user_id = ?",
        (conversation_id, user),
    ).fetchone()
    return Receipt(
        conversation_id=conversation_id,
        user_id=user,
        read_seq=read_seq,
        delivered_seq=delivered_seq,
    )


def unread(conn: sqlite3.Connection, user: str) -> dict[str, int]:
    """Per visible conversation (hidden ones are left out, as in the list)."""
    return {
        cid: count
        for cid, count in conn.execute(
            f"SELECT m.conversation_id, {records.UNREAD} FROM members m "
            "WHERE m.user_id = ? AND m.hidden = 0",
            (user,),
        )
    }


def react(
    conn: sqlite3.Connection, user: str, message_id: str, emoji: str, add: bool, now_ms: int
) -> tuple[str, int, bool]:
    """Add or remove a reaction: ``(conversation_id, count of that emoji, changed)``."""
    message = rows.load_message(conn, message_id)
    if message is None:
        raise NotFound("no such message")
    rows.membership(conn, user, message.conversation_id)
    if message.deleted_at is not None:
        raise NotFound("the message was deleted")
    if add:
        (mine,) = conn.execute(
            "SELECT COUNT(*) FROM reactions WHERE message_id = ? AND user_id = ?",
            (message_id, user),
        ).fetchone()
        if mine >= MAX_REACTIONS_PER_USER:
            raise Invalid(f"at most {MAX_REACTIONS_PER_USER} reactions per message")
        changed = conn.execute(
            "INSERT INTO reactions (message_id, emoji, user_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (message_id, emoji, user, now_ms),
        ).rowcount
    else:
        changed = conn.execute(
            "DELETE FROM reactions WHERE message_id = ? AND emoji = ? AND user_id = ?",
            (message_id, emoji, user),
        ).rowcount
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM reactions WHERE message_id = ? AND emoji = ?", (message_id, emoji)
    ).fetchone()
    return message.conversation_id, count, bool(changed)


def fts_query(text: str) -> str:
    """User text as an FTS5 query: every word must appear (each quoted, so no syntax)."""
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words)


def search(
    conn: sqlite3.Connection,
    user: str,
    text: str,
    conversation_id: str | None,
    limit: int,
    offset: int,
) -> SearchPage:
    if conversation_id is not None:
        rows.membership(conn, user, conversation_id)
    where, args = "", [fts_query(text), user]
    if conversation_id is not None:
        where = " AND m.conversation_id = ?"
        args.append(conversation_id)
    found = conn.execute(
        f"SELECT {records.MESSAGE_COLUMNS} FROM messages_fts f "
        "JOIN messages m ON m.rowid = f.rowid LEFT JOIN users u ON u.id = m.sender_id "
        "JOIN members mb ON mb.conversation_id = m.conversation_id "
        f"WHERE messages_fts MATCH ? AND mb.user_id = ? AND m.deleted_at IS NULL{where} "
        "ORDER BY bm25(messages_fts), m.created_at DESC LIMIT ? OFFSET ?",
        (*args, limit + 1, offset),
    ).fetchall()
    results = rows.enrich(conn, [records.message(r) for r in found[:limit]], user)
    return SearchPage(results=results, next_offset=offset + limit if len(found) > limit else None)


def create_upload(
    conn: sqlite3.Connection,
    upload_id: str,
    owner: str,
    name: str,
    ctype: str,
    size: int,
    now_ms: int,
) -> Upload:
    conn.execute(
        "INSERT INTO uploads (id, owner_id, name, content_type, size, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (upload_id, owner, name, ctype, size, now_ms),
    )
    return Upload(
        id=upload_id,
        owner_id=owner,
        name=name,
        content_type=ctype,
        size=size,
        created_at=iso_ms(now_ms),
    )


def get_upload(conn: sqlite3.Connection, user: str, upload_id: str) -> Upload:
    """The upload, for its owner or a member of a conversation where it was sent."""
    row = conn.execute(
        "SELECT id, owner_id, name, content_type, size, created_at FROM uploads WHERE id = ?",
        (upload_id,),
    ).fetchone()
    if row is None:
        raise NotFound("no such upload")
    uid, owner, name, ctype, size, created = row
    if (
        owner != user
        and conn.execute(
            "SELECT 1 FROM message_attachments a JOIN messages m ON m.id = a.message_id "
            "JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = ? "
            "WHERE a.upload_id = ? AND m.deleted_at IS NULL LIMIT 1",
            (user, upload_id),
        ).fetchone()
        is None
    ):
        raise Forbidden("this file was not shared with you")
    return Upload(
        id=uid, owner_id=owner, name=name, content_type=ctype, size=size, created_at=iso_ms(created)
    )
