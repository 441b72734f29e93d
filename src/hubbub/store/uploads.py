"""Uploaded files' records (the bytes live on disk; see service/uploads.py)."""

from __future__ import annotations

from hubbub.errors import Forbidden, NotFound
from hubbub.models import Upload
from hubbub.store import records
from hubbub.store.tx import Tx


async def create(
    tx: Tx, upload_id: str, owner: str, name: str, ctype: str, size: int, now_ms: int
) -> Upload:
    await tx.run(
        "INSERT INTO uploads (id, owner_id, name, content_type, size, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        upload_id,
        owner,
        name,
        ctype,
        size,
        now_ms,
    )
    return records.upload((upload_id, owner, name, ctype, size, now_ms))


async def get(tx: Tx, user: str, upload_id: str) -> Upload:
    """The upload, for its owner or a member of a conversation where it was sent."""
    row = await tx.one(
        f"SELECT {records.UPLOAD_COLUMNS} FROM uploads WHERE id = ?",
        upload_id,
    )
    if row is None:
        raise NotFound("no such upload")
    if row[1] != user and None is await tx.one(
        "SELECT 1 FROM message_attachments a JOIN messages m ON m.id = a.message_id "
        "JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = ? "
        "WHERE a.upload_id = ? AND m.deleted_at IS NULL LIMIT 1",
        user,
        upload_id,
    ):
        raise Forbidden("this file was not shared with you")
    return records.upload(row)
