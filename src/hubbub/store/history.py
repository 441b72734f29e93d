"""Reading back: history pages, events after a cursor, and resuming from cursors."""

from __future__ import annotations

from hubbub.models import Page, Receipt, Replay, StreamEvent
from hubbub.store import records
from hubbub.store.access import membership
from hubbub.store.messages import enrich
from hubbub.store.tx import Tx


async def events_after(
    tx: Tx, cid: str, after: int, limit: int, viewer: str | None = None
) -> list[StreamEvent]:
    """Stream events with seq > ``after``, oldest first (no access check: callers do it)."""
    found = await tx.all(
        f"SELECT e.seq, e.type, e.data, {records.MESSAGE_COLUMNS} FROM events e "
        "LEFT JOIN messages m ON m.id = e.message_id LEFT JOIN users u ON u.id = m.sender_id "
        "WHERE e.conversation_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
        cid,
        after,
        limit,
    )
    events = [
        records.stream_event(
            cid, seq, kind, None if rest[0] is None else records.message(rest), data
        )
        for seq, kind, data, *rest in found
    ]
    await enrich(tx, [e.message for e in events if e.message is not None], viewer)
    return events


async def replay(tx: Tx, user: str, cursors: dict[str, int], limit: int) -> list[Replay]:
    """Events after each cursor, for a member; statuses for the rest (one consistent read)."""
    replays = []
    for cid, cursor in cursors.items():
        last_seq = await tx.value(
            "SELECT c.last_seq FROM conversations c JOIN members m "
            "ON m.conversation_id = c.id AND m.user_id = ? WHERE c.id = ?",
            user,
            cid,
        )
        if last_seq is None:
            replays.append(Replay(conversation_id=cid, status="unavailable", last_seq=0, events=[]))
        elif last_seq - cursor > limit:
            replays.append(
                Replay(conversation_id=cid, status="too_far_behind", last_seq=last_seq, events=[])
            )
        else:
            events = await events_after(tx, cid, cursor, limit, user)
            replays.append(
                Replay(conversation_id=cid, status="ok", last_seq=last_seq, events=events)
            )
    return replays


MAX_POINTERS = 256
"""Members' read pointers come with a page only in conversations up to this size."""


async def list_messages(
    tx: Tx, user: str, cid: str, before: int | None, after: int | None, limit: int
) -> Page:
    """A page of history in ascending seq, with the members' pointers."""
    await membership(tx, user, cid)
    page = await _page(tx, user, cid, before, after, limit)
    page.receipts = await _pointers(tx, cid)
    return page


async def _page(
    tx: Tx, user: str, cid: str, before: int | None, after: int | None, limit: int
) -> Page:
    if before is not None and after is not None and after >= before - 1:
        return Page(messages=[], has_more=False)
    select = f"{records.SELECT_MESSAGE} WHERE m.conversation_id = ?"
    if after is not None and before is None:
        found = await tx.all(
            f"{select} AND m.seq > ? ORDER BY m.seq ASC LIMIT ?", cid, after, limit + 1
        )
        chosen = [records.message(r) for r in found[:limit]]
    else:
        clauses, args = "", list[object]([cid])
        if before is not None:
            clauses += " AND m.seq < ?"
            args.append(before)
        if after is not None:
            clauses += " AND m.seq > ?"
            args.append(after)
        found = await tx.all(f"{select}{clauses} ORDER BY m.seq DESC LIMIT ?", *args, limit + 1)
        chosen = [records.message(r) for r in reversed(found[:limit])]
    return Page(messages=await enrich(tx, chosen, user), has_more=len(found) > limit)


async def _pointers(tx: Tx, cid: str) -> list[Receipt]:
    """Members' read and delivered pointers, for conversations small enough to list."""
    found = await tx.all(
        "SELECT user_id, read_seq, delivered_seq FROM members WHERE conversation_id = ? "
        "ORDER BY user_id LIMIT ?",
        cid,
        MAX_POINTERS + 1,
    )
    if len(found) > MAX_POINTERS:
        return []
    return [
        Receipt(conversation_id=cid, user_id=uid, read_seq=read, delivered_seq=delivered)
        for uid, read, delivered in found
    ]
