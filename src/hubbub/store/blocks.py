"""Blocks between users (what they stop is decided by the service and the rules)."""

from __future__ import annotations

from hubbub.store.tx import Tx


async def block(tx: Tx, blocker: str, blocked: str, now_ms: int) -> bool:
    return bool(
        await tx.run(
            "INSERT INTO blocks (blocker, blocked, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            blocker,
            blocked,
            now_ms,
        )
    )


async def unblock(tx: Tx, blocker: str, blocked: str) -> bool:
    return bool(
        await tx.run("DELETE FROM blocks WHERE blocker = ? AND blocked = ?", blocker, blocked)
    )


async def blocked_by(tx: Tx, user: str) -> list[str]:
    """Users this user has blocked."""
    found = await tx.all("SELECT blocked FROM blocks WHERE blocker = ? ORDER BY 1", user)
    return [b for (b,) in found]


async def blockers_of(tx: Tx, user: str) -> list[str]:
    """Users who have blocked this user."""
    found = await tx.all("SELECT blocker FROM blocks WHERE blocked = ? ORDER BY 1", user)
    return [b for (b,) in found]
