"""Appending to a conversation's stream: each event takes the next seq."""

from __future__ import annotations

from typing import Any

from hubbub.models import StreamEvent
from hubbub.store import records
from hubbub.store.tx import Tx


async def next_seq(tx: Tx, conversation_id: str) -> int:
    """Take the conversation's next seq.

    On PostgreSQL the UPDATE holds the conversation's row lock until commit,
    so writers in any process get consecutive seqs, and a rolled-back writer
    gives its seq back.
    """
    return int(
        await tx.value(
            "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
            conversation_id,
        )
    )


async def add_event(
    tx: Tx,
    conversation_id: str,
    kind: str,
    now_ms: int,
    *,
    message_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> StreamEvent:
    """Append an event (not a new message: see messages.append) to the stream."""
    seq = await next_seq(tx, conversation_id)
    await tx.run(
        "INSERT INTO events (conversation_id, seq, type, message_id, data, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        conversation_id,
        seq,
        kind,
        message_id,
        records.event_data(data),
        now_ms,
    )
    return StreamEvent(conversation_id=conversation_id, seq=seq, type=kind, data=data)
