"""Rows to records: the column lists and their mapping to models."""

from __future__ import annotations

import json
from typing import Any

from hubbub.clock import iso_ms
from hubbub.models import Device, Member, Message, RoomSummary, StreamEvent, Upload
from hubbub.store.tx import Row

MESSAGE_COLUMNS = (
    "m.id, m.conversation_id, m.seq, m.sender_id, u.name, m.kind, m.body, m.client_msg_id, "
    "m.reply_to, m.created_at, m.edited_at, m.deleted_at"
)
MESSAGE_FROM = "messages m LEFT JOIN users u ON u.id = m.sender_id"
SELECT_MESSAGE = f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM}"


def unread(member: str, conversation: str) -> str:
    """A member row's unread count: others' messages after its read pointer, not deleted.

    Counted without reading the messages (index lookups, however long the
    conversation): the conversation's ``message_count``, less the ordinal of
    the last message up to the read pointer, less the deleted messages after
    it. A member's own messages are never after its read pointer (a send
    moves it), so "others'" needs no term of its own; ``unread_recount`` is
    the definition, which the tests hold this to.
    """
    m, c = member, conversation
    return (
        f"({c}.message_count - COALESCE((SELECT r.ordinal FROM messages r "
        f"WHERE r.conversation_id = {m}.conversation_id AND r.seq <= {m}.read_seq "
        "ORDER BY r.seq DESC LIMIT 1), 0) - (SELECT COUNT(*) FROM messages d "
        f"WHERE d.conversation_id = {m}.conversation_id AND d.seq > {m}.read_seq "
        "AND d.deleted_at IS NOT NULL))"
    )


def unread_recount(member: str) -> str:
    """The unread count by its definition, counting the messages (the tests' reference)."""
    return (
        f"(SELECT COUNT(*) FROM messages x WHERE x.conversation_id = {member}.conversation_id "
        f"AND x.seq > {member}.read_seq AND x.sender_id != {member}.user_id "
        "AND x.deleted_at IS NULL)"
    )


CONVERSATION_COLUMNS = (
    "c.id, c.kind, c.title, c.created_by, c.created_at, c.last_seq, c.last_activity_at"
)


def message(row: Row) -> Message:
    mid, cid, seq, sender, name, kind, body, cmid, reply_to, created, edited, deleted = row
    return Message(
        id=mid,
        conversation_id=cid,
        seq=seq,
        sender_id=sender,
        sender_name=name,
        kind=kind,
        body=body,
        client_msg_id=cmid,
        reply_to=reply_to,
        created_at=iso_ms(created),
        edited_at=None if edited is None else iso_ms(edited),
        deleted_at=None if deleted is None else iso_ms(deleted),
    )


UPLOAD_URL = "/api/v1/uploads/{id}"


def upload_url(upload_id: str) -> str:
    return UPLOAD_URL.format(id=upload_id)


def conversation_fields(row: Row) -> dict[str, Any]:
    cid, kind, title, created_by, created_at, last_seq, activity = row[:7]
    return {
        "id": cid,
        "kind": kind,
        "title": title,
        "created_by": created_by,
        "created_at": iso_ms(created_at),
        "last_seq": last_seq,
        "last_activity_at": iso_ms(activity),
    }


def event_data(data: dict[str, Any] | None) -> str | None:
    """The ``events.data`` column: a stream event's own fields as compact JSON."""
    return None if data is None else json.dumps(data, separators=(",", ":"))


def stream_event(
    conversation_id: str, seq: int, kind: str, msg: Message | None, data: str | None
) -> StreamEvent:
    return StreamEvent(
        conversation_id=conversation_id,
        seq=seq,
        type=kind,
        message=msg,
        data=None if data is None else json.loads(data),
    )


def member(row: Row) -> Member:
    uid, name, role, joined, read, delivered = row
    return Member(
        user_id=uid,
        name=name,
        role=role,
        joined_at=iso_ms(joined),
        read_seq=read,
        delivered_seq=delivered,
    )


def room(row: Row) -> RoomSummary:
    cid, title, by, created, activity, count, joined = row
    return RoomSummary(
        id=cid,
        title=title,
        created_by=by,
        created_at=iso_ms(created),
        last_activity_at=iso_ms(activity),
        member_count=count,
        joined=bool(joined),
    )


UPLOAD_COLUMNS = "id, owner_id, name, content_type, size, created_at"


def upload(row: Row) -> Upload:
    uid, owner, name, ctype, size, created = row
    return Upload(
        id=uid,
        owner_id=owner,
        name=name,
        content_type=ctype,
        size=size,
        created_at=iso_ms(created),
    )


DEVICE_COLUMNS = "id, provider, token, platform, app_id, created_at, updated_at"


def device(row: Row) -> Device:
    did, provider, token, platform, app_id, created, updated = row
    return Device(
        id=did,
        provider=provider,
        token=token,
        platform=platform,
        app_id=app_id,
        created_at=iso_ms(created),
        updated_at=iso_ms(updated),
    )
