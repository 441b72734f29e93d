"""Messages: storing sends (the hot path), edits, deletes, reactions, reading one."""

from __future__ import annotations

from hubbub import rules
from hubbub.clock import iso_ms
from hubbub.errors import HubbubError, NotFound
from hubbub.ids import new_id
from hubbub.models import Attachment, Message, Reaction, SendItem, StreamEvent, Version
from hubbub.store import push, records
from hubbub.store.access import direct_blocked, membership
from hubbub.store.base import Appended
from hubbub.store.events import add_event
from hubbub.store.tx import Tx

HEAD = (
    "SELECT c.kind, m.role, u.name, c.push_members - COALESCE(m.push, 0) FROM conversations c "
    "LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = ?1 "
    "LEFT JOIN users u ON u.id = ?1 WHERE c.id = ?2"
)
"""What a send needs to know first: the conversation's kind, the sender's role and name, and
how many other members have a device (the message is noted for push if any)."""
RETRY = "SELECT id FROM messages WHERE sender_id = ? AND conversation_id = ? AND client_msg_id = ?"
HEAD_AND_RETRY = (
    "SELECT c.kind, m.role, u.name, c.push_members - COALESCE(m.push, 0), r.id, "
    "EXISTS (SELECT 1 FROM members AS h INDEXED BY members_hidden "
    "WHERE h.conversation_id = c.id AND h.hidden = 1) "
    "FROM conversations c "
    "LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = ?1 "
    "LEFT JOIN users u ON u.id = ?1 "
    "LEFT JOIN messages r ON r.sender_id = ?1 AND r.conversation_id = c.id "
    "AND r.client_msg_id = ?3 WHERE c.id = ?2"
)
ENRICH_CHUNK = 500
"""Messages enriched per query (SQLite caps the arguments of one statement)."""


async def load(tx: Tx, message_id: str, viewer: str | None = None) -> Message | None:
    row = await tx.one(f"{records.SELECT_MESSAGE} WHERE m.id = ?", message_id)
    return None if row is None else (await enrich(tx, [records.message(row)], viewer))[0]


async def enrich(tx: Tx, messages: list[Message], viewer: str | None = None) -> list[Message]:
    """Fill in attachments and reaction counts (``me`` relative to ``viewer``)."""
    live = [m for m in messages if m.deleted_at is None]
    for start in range(0, len(live), ENRICH_CHUNK):
        by_id = {m.id: m for m in live[start : start + ENRICH_CHUNK]}
        among, ids = tx.dialect.in_("a.message_id", list(by_id))
        for mid, uid, name, ctype, size in await tx.all(
            "SELECT a.message_id, u.id, u.name, u.content_type, u.size FROM message_attachments a "
            f"JOIN uploads u ON u.id = a.upload_id WHERE {among} "
            "ORDER BY a.message_id, a.position",
            *ids,
        ):
            by_id[mid].attachments.append(
                Attachment(
                    id=uid, name=name, content_type=ctype, size=size, url=records.upload_url(uid)
                )
            )
        among, ids = tx.dialect.in_("message_id", list(by_id))
        for mid, emoji, count, mine in await tx.all(
            "SELECT message_id, emoji, COUNT(*), MAX(CASE WHEN user_id = ? THEN 1 ELSE 0 END) "
            f"FROM reactions WHERE {among} GROUP BY message_id, emoji ORDER BY MIN(created_at)",
            viewer,
            *ids,
        ):
            by_id[mid].reactions.append(Reaction(emoji=emoji, count=count, me=bool(mine)))
    return messages


async def _attachments(tx: Tx, sender: str, item: SendItem) -> list[Attachment]:
    if not item.attachments:
        return []
    among, ids = tx.dialect.in_("id", list(item.attachments))
    found = {
        uid: (name, ctype, size)
        for uid, name, ctype, size in await tx.all(
            f"SELECT id, name, content_type, size FROM uploads WHERE owner_id = ? AND {among}",
            sender,
            *ids,
        )
    }
    return rules.attachments(item.kind, item.attachments, found, records.UPLOAD_URL)


async def _append_one(
    tx: Tx, sender: str, item: SendItem, now_ms: int, as_server: bool
) -> Appended:
    """Store one message (this is the hot path of every send)."""
    cid = item.conversation_id
    # A retry is recognised first: its sender gets the original back even if
    # the conversation has changed since (left, blocked).
    if tx.dialect.locks_rows:
        # The conversation's row lock serialises appends to it across
        # processes; only once it is held can the check for a retry see every
        # committed send (a join in the locking statement would read the
        # messages as they were before the wait).
        head = await tx.one(HEAD + tx.dialect.lock("c"), sender, cid)
        retry = await tx.value(RETRY, sender, cid, item.client_msg_id)
    else:
        # One writer: the check for a retry joins the same statement, and so
        # does whether any member hid the conversation (mostly nobody did).
        head = await tx.one(HEAD_AND_RETRY, sender, cid, item.client_msg_id)
        retry = None if head is None else head[4]
    if head is None:
        return NotFound("no such conversation")
    if retry is not None:
        original = await load(tx, retry)
        assert original is not None
        return original, False
    kind, role, name, pushed = head[:4]
    # Every check comes before anything is written, so a refused item leaves
    # nothing to roll back (on SQLite the worker then needs no savepoint).
    try:
        if not as_server:
            blocked = (
                kind == "direct" and role is not None and await direct_blocked(tx, sender, cid)
            )
            rules.may_send((kind, role), blocked)
        attachments = await _attachments(tx, sender, item)
        if item.reply_to is not None:
            rules.reply_target(
                cid,
                await tx.value("SELECT conversation_id FROM messages WHERE id = ?", item.reply_to),
            )
    except HubbubError as exc:
        return exc
    mid = new_id("m")
    counted = await tx.one(
        "UPDATE conversations SET last_seq = last_seq + 1, message_count = message_count + 1, "
        "last_activity_at = ? WHERE id = ? RETURNING last_seq, message_count",
        now_ms,
        cid,
    )
    assert counted is not None
    seq, ordinal = counted
    insert_message = (
        "INSERT INTO messages (id, conversation_id, seq, sender_id, kind, body, client_msg_id, "
        "reply_to, created_at, ordinal) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    )
    message_args = (mid, cid, seq, sender, item.kind, item.body, item.client_msg_id)
    if tx.dialect.name == "postgresql":
        # One round trip for both rows.
        await tx.run(
            "WITH e AS (INSERT INTO events (conversation_id, seq, type, message_id, created_at) "
            f"VALUES (?2, ?3, 'message.new', ?1, ?9)){push.NOTE_POSTGRESQL if pushed else ''} "
            f"{insert_message}",
            *message_args,
            item.reply_to,
            now_ms,
            ordinal,
        )
    else:
        await tx.run(
            "INSERT INTO events (conversation_id, seq, type, message_id, created_at) "
            "VALUES (?, ?, 'message.new', ?, ?)",
            cid,
            seq,
            mid,
            now_ms,
        )
        await tx.run(insert_message, *message_args, item.reply_to, now_ms, ordinal)
        if pushed:
            await push.note_message(tx, cid, seq, sender, now_ms)
    if attachments:
        await tx.many(
            "INSERT INTO message_attachments (message_id, upload_id, position) VALUES (?, ?, ?)",
            [(mid, a.id, i) for i, a in enumerate(attachments)],
        )
    # Your own message is read by you; a hidden conversation reappears.
    if tx.dialect.name == "postgresql":
        await tx.run(
            "UPDATE members SET read_seq = CASE WHEN user_id = ?3 THEN ?1 ELSE read_seq END, "
            "delivered_seq = CASE WHEN user_id = ?3 THEN GREATEST(delivered_seq, ?1) "
            "ELSE delivered_seq END, hidden = 0 "
            "WHERE conversation_id = ?2 AND (user_id = ?3 OR hidden = 1)",
            seq,
            cid,
            sender,
        )
    else:
        # Two statements, each on an index: SQLite would read every member of
        # the conversation for one that filtered on "sender or hidden".
        await tx.run(
            "UPDATE members SET read_seq = ?1, delivered_seq = MAX(delivered_seq, ?1) "
            "WHERE conversation_id = ?2 AND user_id = ?3",
            seq,
            cid,
            sender,
        )
        if head[5]:  # the first statement saw a member who hid it (SQLite's HEAD_AND_RETRY)
            await tx.run(
                "UPDATE members INDEXED BY members_hidden SET hidden = 0 "
                "WHERE conversation_id = ? AND hidden = 1",
                cid,
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


async def append(
    tx: Tx, sender: str, items: list[SendItem], now_ms: int, as_server: bool
) -> list[Appended]:
    """Store a batch in order; ``as_server``: the app's backend, no membership needed."""
    cids = sorted({item.conversation_id for item in items})
    if len(cids) > 1 and tx.dialect.locks_rows:
        # A batch over several conversations locks them all first, in one
        # order (by id), so two batches over the same ones cannot deadlock.
        among, ids = tx.dialect.in_("id", cids)
        await tx.run(
            f"SELECT 1 FROM conversations WHERE {among} ORDER BY id{tx.dialect.lock()}", *ids
        )
    stored = []
    for item in items:
        stored.append(await _append_one(tx, sender, item, now_ms, as_server))
    return stored


async def _visible(
    tx: Tx, user: str, message_id: str, viewer: str | None = None
) -> tuple[Message, str, str]:
    """A message in a conversation the user is a member of, with ``(kind, role)``."""
    message = await load(tx, message_id, viewer)
    if message is None:
        raise NotFound("no such message")
    kind, role = await membership(tx, user, message.conversation_id)
    return message, kind, role


async def edit(tx: Tx, user: str, message_id: str, body: str, now_ms: int) -> StreamEvent:
    # Concurrent edits of one message queue here, so version numbers never clash.
    # NO KEY: a send replying to this message (its foreign key takes a KEY
    # SHARE lock) while holding the conversation's lock must not wait for us.
    if tx.dialect.locks_rows:
        await tx.run(
            f"SELECT 1 FROM messages WHERE id = ?{tx.dialect.lock(no_key=True)}", message_id
        )
    message, _kind, _role = await _visible(tx, user, message_id)
    rules.may_edit(user, rules.live(message))
    await tx.run(
        "INSERT INTO message_versions (message_id, version, body, written_at) "
        "SELECT id, (SELECT COUNT(*) + 1 FROM message_versions WHERE message_id = ?1), body, "
        "COALESCE(edited_at, created_at) FROM messages WHERE id = ?1",
        message_id,
    )
    await tx.run(
        "UPDATE messages SET body = ?, edited_at = ? WHERE id = ?", body, now_ms, message_id
    )
    event = await _event(tx, message.conversation_id, "message.edited", now_ms, message_id)
    return event


async def delete(tx: Tx, user: str, message_id: str, now_ms: int) -> StreamEvent:
    message, kind, role = await _visible(tx, user, message_id)
    rules.may_delete(user, rules.live(message), kind, role)
    # A tombstone: the body and its earlier versions are gone for good.
    await tx.run(
        "UPDATE messages SET body = '', deleted_at = ?, deleted_by = ? WHERE id = ?",
        now_ms,
        user,
        message_id,
    )
    await tx.run("DELETE FROM message_versions WHERE message_id = ?", message_id)
    return await _event(
        tx, message.conversation_id, "message.deleted", now_ms, message_id, {"deleted_by": user}
    )


async def _event(
    tx: Tx,
    cid: str,
    kind: str,
    now_ms: int,
    message_id: str,
    data: dict[str, str] | None = None,
) -> StreamEvent:
    """A stream event about a message, carrying the message as it now is."""
    event = await add_event(tx, cid, kind, now_ms, message_id=message_id, data=data)
    event.message = await load(tx, message_id)
    return event


async def versions(tx: Tx, user: str, message_id: str) -> list[Version]:
    message, _kind, _role = await _visible(tx, user, message_id)
    found = [
        Version(body=body, written_at=iso_ms(at))
        for body, at in await tx.all(
            "SELECT body, written_at FROM message_versions WHERE message_id = ? ORDER BY version",
            message_id,
        )
    ]
    if message.deleted_at is None:
        found.append(Version(body=message.body, written_at=message.edited_at or message.created_at))
    return found


async def get(tx: Tx, user: str, message_id: str) -> Message:
    message, _kind, _role = await _visible(tx, user, message_id, viewer=user)
    return message


async def react(
    tx: Tx, user: str, message_id: str, emoji: str, add: bool, now_ms: int
) -> tuple[str, int, bool]:
    """Add or remove a reaction: ``(conversation_id, count of that emoji, changed)``."""
    message, _kind, _role = await _visible(tx, user, message_id)
    rules.live(message)
    if add:
        rules.may_react(
            await tx.value(
                "SELECT COUNT(*) FROM reactions WHERE message_id = ? AND user_id = ?",
                message_id,
                user,
            )
        )
        changed = await tx.run(
            "INSERT INTO reactions (message_id, emoji, user_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            message_id,
            emoji,
            user,
            now_ms,
        )
    else:
        changed = await tx.run(
            "DELETE FROM reactions WHERE message_id = ? AND emoji = ? AND user_id = ?",
            message_id,
            emoji,
            user,
        )
    count = await tx.value(
        "SELECT COUNT(*) FROM reactions WHERE message_id = ? AND emoji = ?", message_id, emoji
    )
    return message.conversation_id, int(count), bool(changed)
