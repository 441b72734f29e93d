"""Users as hubbub knows them: display names, last seen, and who shares a conversation."""

from __future__ import annotations

from hubbub.store.tx import Tx


async def set_name(tx: Tx, user_id: str, name: str, now_ms: int) -> None:
    await tx.run(
        "INSERT INTO users (id, name, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at "
        "WHERE users.name IS DISTINCT FROM excluded.name",
        user_id,
        name,
        now_ms,
    )


async def set_last_seen(tx: Tx, user_id: str, now_ms: int) -> None:
    await tx.run(
        "INSERT INTO users (id, updated_at, last_seen) VALUES (?1, ?2, ?2) "
        "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        user_id,
        now_ms,
    )


async def set_last_seen_many(tx: Tx, seen: list[tuple[str, int]]) -> None:
    """``set_last_seen`` for several users, in one transaction."""
    await tx.many(
        "INSERT INTO users (id, updated_at, last_seen) VALUES (?1, ?2, ?2) "
        "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        seen,
    )


async def last_seen(tx: Tx, user_ids: list[str]) -> dict[str, int | None]:
    among, ids = tx.dialect.in_("id", user_ids)
    found = {
        uid: seen
        for uid, seen in await tx.all(f"SELECT id, last_seen FROM users WHERE {among}", *ids)
    }
    return {u: found.get(u) for u in user_ids}


async def contacts(tx: Tx, user: str, largest: int | None = None) -> list[str]:
    """Users sharing a direct conversation or group (not a room) with this user.

    With ``largest``, only through direct conversations and groups of at most
    that many members: a larger group is looked at up to its ``largest + 1``-th
    member, never read whole.
    """
    if largest is None:
        found = await tx.all(
            "SELECT DISTINCT o.user_id FROM members m JOIN conversations c "
            "ON c.id = m.conversation_id AND c.kind != 'room' "
            "JOIN members o ON o.conversation_id = m.conversation_id "
            "WHERE m.user_id = ?1 AND o.user_id != ?1",
            user,
        )
        return [uid for (uid,) in found]
    small = await tx.all(
        "SELECT m.conversation_id FROM members m JOIN conversations c "
        "ON c.id = m.conversation_id AND c.kind != 'room' "
        "WHERE m.user_id = ?1 AND (c.kind = 'direct' OR NOT EXISTS ("
        "SELECT 1 FROM members x WHERE x.conversation_id = m.conversation_id "
        "LIMIT 1 OFFSET ?2))",
        user,
        largest,
    )
    if not small:
        return []
    among, ids = tx.dialect.in_("conversation_id", [cid for (cid,) in small])
    found = await tx.all(
        f"SELECT DISTINCT user_id FROM members WHERE {among} AND user_id != ?",
        *ids,
        user,
    )
    return [uid for (uid,) in found]


async def shared_with(tx: Tx, user: str, others: list[str]) -> list[str]:
    """Which of ``others`` share a direct conversation or group (not a room) with ``user``."""
    among, ids = tx.dialect.in_("o.user_id", others)
    found = await tx.all(
        "SELECT DISTINCT o.user_id FROM members m JOIN conversations c "
        "ON c.id = m.conversation_id AND c.kind != 'room' "
        "JOIN members o ON o.conversation_id = m.conversation_id "
        f"WHERE m.user_id = ? AND o.user_id != ? AND {among}",
        user,
        user,
        *ids,
    )
    return [uid for (uid,) in found]
