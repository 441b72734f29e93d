"""Read and delivered pointers, and the unread counts they imply."""

from __future__ import annotations

from hubbub.models import Receipt
from hubbub.store import records
from hubbub.store.access import membership
from hubbub.store.tx import Tx


async def mark(tx: Tx, user: str, cid: str, kind: str, seq: int) -> Receipt | None:
    """Move the user's read or delivered pointer forward; None when it did not move."""
    await membership(tx, user, cid)
    last_seq = await tx.value("SELECT last_seq FROM conversations WHERE id = ?", cid)
    seq = min(seq, last_seq)
    if kind == "read":
        moved = await tx.run(
            f"UPDATE members SET read_seq = ?1, delivered_seq = {tx.dialect.greatest}"
            "(delivered_seq, ?1) WHERE conversation_id = ?2 AND user_id = ?3 AND read_seq < ?1",
            seq,
            cid,
            user,
        )
    else:
        moved = await tx.run(
            "UPDATE members SET delivered_seq = ?1 "
            "WHERE conversation_id = ?2 AND user_id = ?3 AND delivered_seq < ?1",
            seq,
            cid,
            user,
        )
    if not moved:
        return None
    row = await tx.one(
        "SELECT read_seq, delivered_seq FROM members WHERE conversation_id = ? AND user_id = ?",
        cid,
        user,
    )
    assert row is not None
    return Receipt(conversation_id=cid, user_id=user, read_seq=row[0], delivered_seq=row[1])


async def unread(tx: Tx, user: str) -> dict[str, int]:
    """Per visible conversation (hidden ones are left out, as in the list)."""
    found = await tx.all(
        f"SELECT m.conversation_id, {records.unread('m', 'c')} FROM members m "
        "JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ? AND m.hidden = 0",
        user,
    )
    return {cid: count for cid, count in found}
