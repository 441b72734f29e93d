"""Messages, the event stream and receipts (PostgreSQL)."""

from __future__ import annotations

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
from hubbub.store import postgres_rows as rows
from hubbub.store import records
from hubbub.store.base import Appended
from hubbub.store.postgres_rows import Conn
from hubbub.store.sqlite_messages import MAX_POINTERS, MAX_REACTIONS_PER_USER, MODERATORS


async def _check_attachments(conn: Conn, sender: str, item: SendItem) -> list[Attachment]:
    if not item.attachments:
        return []
    found = {
        uid: (name, ctype, size)
        for uid, name, ctype, size in await conn.fetch(
            "SELECT id, name, content_type, size FROM uploads "
            "WHERE owner_id = $1 AND id = ANY($2::text[])",
            sender,
            list(item.attachments),
        )
    }
    return records.attachments(item, found)


async def _append_one(
    conn: Conn, sender: str, item: SendItem, now_ms: int, as_server: bool
) -> Appended:
    """Store one message in five round trips (this is the hot path of every send)."""
    cid = item.conversation_id
    # The conversation's row lock serialises appends to it across processes,
    # so the idempotency check below cannot race another writer.
    head = await conn.fetchrow(
        "SELECT c.kind, m.role, u.name FROM conversations c "
        "LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = $1 "
        "LEFT JOIN users u ON u.id = $1 WHERE c.id = $2 FOR UPDATE OF c",
        sender,
        cid,
    )
    if head is None:
        return NotFound("no such conversation")
    # A retry is recognised first: its sender gets the original back even if
    # the conversation has changed since (left, blocked).
    row = await conn.fetchrow(
        f"{records.SELECT_MESSAGE} "
        "WHERE m.sender_id = $1 AND m.conversation_id = $2 AND m.client_msg_id = $3",
        sender,
        cid,
        item.client_msg_id,
    )
    if row is not None:
        return (await rows.enrich(conn, [records.message(tuple(row))]))[0], False
    kind, role, name = head
    try:
        if not as_server:
            if role is None:
                raise Forbidden("you are not a member of this conversation")
            if kind == "direct" and await rows.direct_blocked(conn, sender, cid):
                raise Forbidden("this direct conversation is blocked")
        attachments = await _check_attachments(conn, sender, item)
        if item.reply_to is not None:
            parent = await conn.fetchval(
                "SELECT conversation_id FROM messages WHERE id = $1", item.reply_to
            )
            if parent != cid:
                raise Invalid("reply_to must be a message of the same conversation")
    except HubbubError as exc:
        return exc
    mid = new_id("m")
    seq = await conn.fetchval(
        "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = $2 "
        "WHERE id = $1 RETURNING last_seq",
        cid,
        now_ms,
    )
    await conn.execute(
        "WITH e AS (INSERT INTO events (conversation_id, seq, type, message_id, created_at) "
        "VALUES ($2, $3, 'message.new', $1, $9)) "
        "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_msg_id, "
        "reply_to, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        mid,
        cid,
        seq,
        sender,
        item.kind,
        item.body,
        item.client_msg_id,
        item.reply_to,
        now_ms,
    )
    if attachments:
        await conn.executemany(
            "INSERT INTO message_attachments (message_id, upload_id, position) VALUES ($1, $2, $3)",
            [(mid, a.id, i) for i, a in enumerate(attachments)],
        )
    # Your own message is read by you; a hidden conversation reappears.
    await conn.execute(
        "UPDATE members SET read_seq = CASE WHEN user_id = $3 THEN $1 ELSE read_seq END, "
        "delivered_seq = CASE WHEN user_id = $3 THEN GREATEST(delivered_seq, $1) "
        "ELSE delivered_seq END, hidden = 0 "
        "WHERE conversation_id = $2 AND (user_id = $3 OR hidden = 1)",
        seq,
        cid,
        sender,
    )
    message = Message(
        id=mid,
        conversation_id=cid,
        seq=seq,
        sender_id=sender,
        sender_name=name,
        kind=item.kind,
        body=item.body,
        client_msg_id=item.client_msg_id,
        reply_to=item.reply_to,
        created_at=iso_ms(now_ms),
        attachments=attachments,
    )
    return message, True


async def append_messages(
    conn: Conn, sender: str, items: list[SendItem], now_ms: int, as_server: bool
) -> list[Appended]:
    # No savepoints: every check happens before anything is written, under the
    # conversation's row lock, so a refused item leaves nothing to roll back.
    # A batch that spans conversations locks them all first, in one order (by
    # id), so two batches over the same conversations cannot deadlock.
    cids = sorted({item.conversation_id for item in items})
    if len(cids) > 1:
        await conn.execute(
            "SELECT 1 FROM conversations WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", cids
        )
    return [await _append_one(conn, sender, item, now_ms, as_server) for item in items]


async def _editable(conn: Conn, user: str, message_id: str) -> tuple[Message, str]:
    message = await rows.load_message(conn, message_id)
    if message is None:
        raise NotFound("no such message")
    _kind, role = await rows.membership(conn, user, message.conversation_id)
    if message.deleted_at is not None:
        raise NotFound("the message was deleted")
    return message, role


async def edit_message(
    conn: Conn, user: str, message_id: str, body: str, now_ms: int
) -> StreamEvent:
    # Concurrent edits of one message queue here, so version numbers never clash.
    # NO KEY: a send replying to this message (its foreign key takes a KEY
    # SHARE lock) while holding the conversation's lock must not wait for us.
    await conn.execute("SELECT 1 FROM messages WHERE id = $1 FOR NO KEY UPDATE", message_id)
    message, _role = await _editable(conn, user, message_id)
    if message.sender_id != user:
        raise Forbidden("only the sender can edit a message")
    if message.kind == "system":
        raise Forbidden("system messages cannot be edited")
    await conn.execute(
        "INSERT INTO message_versions (message_id, version, body, written_at) "
        "SELECT id, (SELECT COUNT(*) + 1 FROM message_versions WHERE message_id = $1), body, "
        "COALESCE(edited_at, created_at) FROM messages WHERE id = $1",
        message_id,
    )
    await conn.execute(
        "UPDATE messages SET body = $1, edited_at = $2 WHERE id = $3", body, now_ms, message_id
    )
    cid = message.conversation_id
    seq = await rows.add_event(conn, cid, "message.edited", now_ms, message_id=message_id)
    return StreamEvent(
        conversation_id=cid,
        seq=seq,
        type="message.edited",
        message=await rows.load_message(conn, message_id),
    )


async def delete_message(conn: Conn, user: str, message_id: str, now_ms: int) -> StreamEvent:
    message, role = await _editable(conn, user, message_id)
    cid = message.conversation_id
    kind = await conn.fetchval("SELECT kind FROM conversations WHERE id = $1", cid)
    if message.sender_id != user and not (kind != "direct" and role in MODERATORS):
        raise Forbidden("only the sender or a group owner or admin can delete a message")
    await conn.execute(
        "UPDATE messages SET body = '', deleted_at = $1, deleted_by = $2 WHERE id = $3",
        now_ms,
        user,
        message_id,
    )
    await conn.execute("DELETE FROM message_versions WHERE message_id = $1", message_id)
    data = {"deleted_by": user}
    seq = await rows.add_event(
        conn, cid, "message.deleted", now_ms, message_id=message_id, data=data
    )
    return StreamEvent(
        conversation_id=cid,
        seq=seq,
        type="message.deleted",
        message=await rows.load_message(conn, message_id),
        data=data,
    )


async def message_versions(conn: Conn, user: str, message_id: str) -> list[Version]:
    message = await rows.load_message(conn, message_id)
    if message is None:
        raise NotFound("no such message")
    await rows.membership(conn, user, message.conversation_id)
    versions = [
        Version(body=body, written_at=iso_ms(at))
        for body, at in await conn.fetch(
            "SELECT body, written_at FROM message_versions WHERE message_id = $1 ORDER BY version",
            message_id,
        )
    ]
    if message.deleted_at is None:
        current_at = message.edited_at or message.created_at
        versions.append(Version(body=message.body, written_at=current_at))
    return versions


async def get_message(conn: Conn, user: str, message_id: str) -> Message:
    message = await rows.load_message(conn, message_id, user)
    if message is None:
        raise NotFound("no such message")
    await rows.membership(conn, user, message.conversation_id)
    return message


async def list_messages(
    conn: Conn, user: str, cid: str, before: int | None, after: int | None, limit: int
) -> Page:
    await rows.membership(conn, user, cid)
    page = Page(messages=[], has_more=False)
    if before is None or after is None or after < before - 1:
        if after is not None and before is None:
            found = await conn.fetch(
                f"{records.SELECT_MESSAGE} WHERE m.conversation_id = $1 AND m.seq > $2 "
                "ORDER BY m.seq ASC LIMIT $3",
                cid,
                after,
                limit + 1,
            )
            chosen = [records.message(tuple(r)) for r in found[:limit]]
        else:
            found = await conn.fetch(
                f"{records.SELECT_MESSAGE} WHERE m.conversation_id = $1 "
                "AND ($2::bigint IS NULL OR m.seq < $2) AND ($3::bigint IS NULL OR m.seq > $3) "
                "ORDER BY m.seq DESC LIMIT $4",
                cid,
                before,
                after,
                limit + 1,
            )
            chosen = [records.message(tuple(r)) for r in reversed(found[:limit])]
        page = Page(messages=await rows.enrich(conn, chosen, user), has_more=len(found) > limit)
    pointers = await conn.fetch(
        "SELECT user_id, read_seq, delivered_seq FROM members WHERE conversation_id = $1 "
        "ORDER BY user_id LIMIT $2",
        cid,
        MAX_POINTERS + 1,
    )
    if len(pointers) <= MAX_POINTERS:
        page.receipts = [
            Receipt(conversation_id=cid, user_id=u, read_seq=r, delivered_seq=d)
            for u, r, d in pointers
        ]
    return page


async def replay(conn: Conn, user: str, cursors: dict[str, int], limit: int) -> list[Replay]:
    replays = []
    for cid, cursor in cursors.items():
        last_seq = await conn.fetchval(
            "SELECT c.last_seq FROM conversations c JOIN members m "
            "ON m.conversation_id = c.id AND m.user_id = $1 WHERE c.id = $2",
            user,
            cid,
        )
        if last_seq is None:
            replays.append(Replay(conversation_id=cid, status="unavailable", last_seq=0, events=[]))
            continue
        if last_seq - cursor > limit:
            replays.append(
                Replay(conversation_id=cid, status="too_far_behind", last_seq=last_seq, events=[])
            )
            continue
        events = await events_after(conn, cid, cursor, limit, user)
        replays.append(Replay(conversation_id=cid, status="ok", last_seq=last_seq, events=events))
    return replays


async def events_after(
    conn: Conn, cid: str, after: int, limit: int, viewer: str | None = None
) -> list[StreamEvent]:
    """Stream events with seq > ``after``, oldest first (no access check: callers do it)."""
    found = await conn.fetch(
        f"SELECT e.seq, e.type, e.data, {records.MESSAGE_COLUMNS} FROM events e "
        "LEFT JOIN messages m ON m.id = e.message_id LEFT JOIN users u ON u.id = m.sender_id "
        "WHERE e.conversation_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
        cid,
        after,
        limit,
    )
    events = []
    for seq, kind, data, *rest in (tuple(r) for r in found):
        message = None if rest[0] is None else records.message(tuple(rest))
        events.append(records.stream_event(cid, seq, kind, message, data))
    await rows.enrich(conn, [e.message for e in events if e.message is not None], viewer)
    return events


async def mark(conn: Conn, user: str, cid: str, kind: str, seq: int) -> Receipt | None:
    await rows.membership(conn, user, cid)
    last_seq = await conn.fetchval("SELECT last_seq FROM conversations WHERE id = $1", cid)
    seq = min(seq, last_seq)
    if kind == "read":
        status = await conn.execute(
            "UPDATE members SET read_seq = $1, delivered_seq = GREATEST(delivered_seq, $1) "
            "WHERE conversation_id = $2 AND user_id = $3 AND read_seq < $1",
            seq,
            cid,
            user,
        )
    else:
        status = await conn.execute(
            "UPDATE members SET delivered_seq = $1 "
            "WHERE conversation_id = $2 AND user_id = $3 AND delivered_seq < $1",
            seq,
            cid,
            user,
        )
    if not rows.changed(status):
        return None
    read_seq, delivered_seq = await conn.fetchrow(
        "SELECT read_seq, delivered_seq FROM members WHERE conversation_id = $1 AND user_id = $2",
        cid,
        user,
    )
    return Receipt(
        conversation_id=cid, user_id=user, read_seq=read_seq, delivered_seq=delivered_seq
    )


async def unread(conn: Conn, user: str) -> dict[str, int]:
    """Per visible conversation (hidden ones are left out, as in the list)."""
    found = await conn.fetch(
        f"SELECT m.conversation_id, {records.UNREAD} FROM members m "
        "WHERE m.user_id = $1 AND m.hidden = 0",
        user,
    )
    return {cid: count for cid, count in found}


async def react(
    conn: Conn, user: str, message_id: str, emoji: str, add: bool, now_ms: int
) -> tuple[str, int, bool]:
    message = await rows.load_message(conn, message_id)
    if message is None:
        raise NotFound("no such message")
    await rows.membership(conn, user, message.conversation_id)
    if message.deleted_at is not None:
        raise NotFound("the message was deleted")
    if add:
        mine = await conn.fetchval(
            "SELECT COUNT(*) FROM reactions WHERE message_id = $1 AND user_id = $2",
            message_id,
            user,
        )
        if mine >= MAX_REACTIONS_PER_USER:
            raise Invalid(f"at most {MAX_REACTIONS_PER_USER} reactions per message")
        status = await conn.execute(
            "INSERT INTO reactions (message_id, emoji, user_id, created_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            message_id,
            emoji,
            user,
            now_ms,
        )
    else:
        status = await conn.execute(
            "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
            message_id,
            emoji,
            user,
        )
    count = await conn.fetchval(
        "SELECT COUNT(*) FROM reactions WHERE message_id = $1 AND emoji = $2", message_id, emoji
    )
    return message.conversation_id, int(count), bool(rows.changed(status))


async def search(
    conn: Conn, user: str, text: str, cid: str | None, limit: int, offset: int
) -> SearchPage:
    if cid is not None:
        await rows.membership(conn, user, cid)
    found = await conn.fetch(
        f"{records.SELECT_MESSAGE} JOIN members mb ON mb.conversation_id = m.conversation_id "
        "AND mb.user_id = $2, plainto_tsquery('simple', $1) q "
        "WHERE m.body_tsv @@ q AND m.deleted_at IS NULL "
        "AND ($3::text IS NULL OR m.conversation_id = $3) "
        "ORDER BY ts_rank(m.body_tsv, q) DESC, m.created_at DESC LIMIT $4 OFFSET $5",
        text,
        user,
        cid,
        limit + 1,
        offset,
    )
    results = await rows.enrich(conn, [records.message(tuple(r)) for r in found[:limit]], user)
    return SearchPage(results=results, next_offset=offset + limit if len(found) > limit else None)


async def create_upload(
    conn: Conn, upload_id: str, owner: str, name: str, ctype: str, size: int, now_ms: int
) -> Upload:
    await conn.execute(
        "INSERT INTO uploads (id, owner_id, name, content_type, size, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        upload_id,
        owner,
        name,
        ctype,
        size,
        now_ms,
    )
    return Upload(
        id=upload_id,
        owner_id=owner,
        name=name,
        content_type=ctype,
        size=size,
        created_at=iso_ms(now_ms),
    )


async def get_upload(conn: Conn, user: str, upload_id: str) -> Upload:
    row = await conn.fetchrow(
        "SELECT id, owner_id, name, content_type, size, created_at FROM uploads WHERE id = $1",
        upload_id,
    )
    if row is None:
        raise NotFound("no such upload")
    uid, owner, name, ctype, size, created = row
    if (
        owner != user
        and await conn.fetchval(
            "SELECT 1 FROM message_attachments a JOIN messages m ON m.id = a.message_id "
            "JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = $1 "
            "WHERE a.upload_id = $2 AND m.deleted_at IS NULL LIMIT 1",
            user,
            upload_id,
        )
        is None
    ):
        raise Forbidden("this file was not shared with you")
    return Upload(
        id=uid, owner_id=owner, name=name, content_type=ctype, size=size, created_at=iso_ms(created)
    )
