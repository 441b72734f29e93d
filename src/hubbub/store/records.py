"""Rows to records: the column lists and mapping both SQL stores share."""

from __future__ import annotations

import json
from typing import Any

from hubbub.clock import iso_ms
from hubbub.service.models import Message, StreamEvent

MESSAGE_COLUMNS = (
    "m.id, m.conversation_id, m.seq, m.sender_id, u.name, m.kind, m.body, m.client_msg_id, "
    "m.reply_to, m.created_at, m.edited_at, m.deleted_at"
)
MESSAGE_FROM = "messages m LEFT JOIN users u ON u.id = m.sender_id"
SELECT_MESSAGE = f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM}"
CONVERSATION_COLUMNS = (
    "c.id, c.kind, c.title, c.created_by, c.created_at, c.last_seq, c.last_activity_at"
)


def message(row: tuple[Any, ...]) -> Message:
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


def upload_url(upload_id: str) -> str:
    return f"/api/v1/uploads/{upload_id}"


def conversation_fields(row: tuple[Any, ...]) -> dict[str, Any]:
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
