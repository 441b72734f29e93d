"""Access under the transaction: a user's place in a conversation, blocks, row locks."""

from __future__ import annotations

from hubbub import rules
from hubbub.store.tx import Tx


async def place(tx: Tx, user: str, conversation_id: str) -> rules.Place | None:
    """``(kind, the user's role or None)``; None when the conversation does not exist."""
    row = await tx.one(
        "SELECT c.kind, m.role FROM conversations c LEFT JOIN members m "
        "ON m.conversation_id = c.id AND m.user_id = ? WHERE c.id = ?",
        user,
        conversation_id,
    )
    return None if row is None else (row[0], row[1])


async def membership(tx: Tx, user: str, conversation_id: str) -> tuple[str, str]:
    """``(kind, role)`` of a member; NotFound or Forbidden otherwise (see rules.member)."""
    return rules.member(await place(tx, user, conversation_id))


async def lock(tx: Tx, conversation_id: str) -> None:
    """Take the conversation's row lock: membership changes and sends serialise on it."""
    if tx.dialect.locks_rows:
        await tx.run(
            f"SELECT 1 FROM conversations WHERE id = ?{tx.dialect.lock()}", conversation_id
        )


async def direct_blocked(tx: Tx, user: str, conversation_id: str) -> bool:
    """Whether either side of a direct conversation has blocked the other."""
    return (
        await tx.one(
            "SELECT 1 FROM members o JOIN blocks b ON (b.blocker = o.user_id AND b.blocked = ?1) "
            "OR (b.blocker = ?1 AND b.blocked = o.user_id) "
            "WHERE o.conversation_id = ?2 AND o.user_id != ?1",
            user,
            conversation_id,
        )
        is not None
    )


async def blocked_between(tx: Tx, a: str, b: str) -> bool:
    return (
        await tx.one(
            "SELECT 1 FROM blocks WHERE (blocker = ?1 AND blocked = ?2) "
            "OR (blocker = ?2 AND blocked = ?1)",
            a,
            b,
        )
        is not None
    )
