"""Changing a conversation's membership, roles and title, each change a stream event."""

from __future__ import annotations

from hubbub import rules
from hubbub.models import StreamEvent
from hubbub.store import push
from hubbub.store.access import lock, membership
from hubbub.store.conversations import member_ids
from hubbub.store.events import add_event
from hubbub.store.tx import Tx


async def _moderator(tx: Tx, user: str, cid: str, roles: tuple[str, ...] = rules.MODERATORS) -> str:
    """The user's role, if it may change the conversation (see rules.may_moderate)."""
    kind, role = await membership(tx, user, cid)
    rules.may_moderate(kind, role, roles)
    return role


async def _role_of(tx: Tx, cid: str, user: str) -> str | None:
    return await tx.value(  # type: ignore[no-any-return]
        "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?", cid, user
    )


async def rename(tx: Tx, user: str, cid: str, title: str, now_ms: int) -> list[StreamEvent]:
    await _moderator(tx, user, cid)
    await tx.run("UPDATE conversations SET title = ? WHERE id = ?", title, cid)
    return [
        await add_event(tx, cid, "conversation.renamed", now_ms, data={"title": title, "by": user})
    ]


async def _join(
    tx: Tx, cid: str, user: str, by: str | None, now_ms: int, role: str = "member"
) -> StreamEvent:
    # A newcomer starts caught up: earlier history is readable, not unread.
    await tx.run(
        "INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq, delivered_seq) "
        "SELECT ?1, ?2, ?3, ?4, last_seq, last_seq FROM conversations WHERE id = ?1",
        cid,
        user,
        role,
        now_ms,
    )
    await push.flag_members(tx, cid, [user])
    data = {"user_id": user, "role": role, "by": by}
    return await add_event(tx, cid, "member.joined", now_ms, data=data)


async def add_members(
    tx: Tx, user: str, cid: str, new: list[str], limit: int, now_ms: int
) -> list[StreamEvent]:
    await _moderator(tx, user, cid)
    await lock(tx, cid)
    joiners = rules.joining(await member_ids(tx, cid), new, limit)
    return [await _join(tx, cid, u, user, now_ms) for u in joiners]


async def _set_role(
    tx: Tx, cid: str, user: str, role: str, by: str | None, now_ms: int
) -> StreamEvent:
    # The conversation first, then its member rows, as a send takes them:
    # the other order could deadlock with a send by this member.
    await lock(tx, cid)
    await tx.run(
        "UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?", role, cid, user
    )
    data = {"user_id": user, "role": role, "by": by}
    return await add_event(tx, cid, "member.role_changed", now_ms, data=data)


async def _leave(tx: Tx, cid: str, user: str, by: str | None, now_ms: int) -> list[StreamEvent]:
    role = await tx.value(
        "DELETE FROM members WHERE conversation_id = ? AND user_id = ? RETURNING role", cid, user
    )
    data = {"user_id": user, "by": by, "reason": rules.reason(by)}
    out = [await add_event(tx, cid, "member.left", now_ms, data=data)]
    if role == "owner":
        remaining = await tx.all(
            "SELECT user_id, role, joined_at FROM members WHERE conversation_id = ?", cid
        )
        heir = rules.heir([(u, r, j) for u, r, j in remaining])
        if heir is not None:
            out.append(await _set_role(tx, cid, heir, "owner", None, now_ms))
    return out


async def remove_member(tx: Tx, user: str, cid: str, target: str, now_ms: int) -> list[StreamEvent]:
    """Remove ``target``; ``target == user`` is leaving."""
    if target == user:
        kind, _role = await membership(tx, user, cid)
        rules.may_leave(kind)
        await lock(tx, cid)
        return await _leave(tx, cid, user, None, now_ms)
    my_role = await _moderator(tx, user, cid)
    await lock(tx, cid)
    rules.may_remove(my_role, await _role_of(tx, cid, target))
    return await _leave(tx, cid, target, user, now_ms)


async def set_role(
    tx: Tx, user: str, cid: str, target: str, role: str, now_ms: int
) -> list[StreamEvent]:
    await _moderator(tx, user, cid, ("owner",))
    changes = rules.role_changes(user, target, await _role_of(tx, cid, target), role)
    return [await _set_role(tx, cid, who, new, user, now_ms) for who, new in changes]


async def join_room(tx: Tx, user: str, cid: str, limit: int, now_ms: int) -> list[StreamEvent]:
    kind = await tx.value("SELECT kind FROM conversations WHERE id = ?", cid)
    if kind == "room":
        await lock(tx, cid)
    role = rules.room_joiner_role(kind, await member_ids(tx, cid), user, limit)
    return [] if role is None else [await _join(tx, cid, user, None, now_ms, role)]
