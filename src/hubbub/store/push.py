"""Push notifications: devices, settings, and the outbox a worker drains.

The outbox has three steps, each a table, each moved on by one transaction:

1. ``note_message``, in the send's own transaction: the message goes into
   ``push_events`` when another member has a device (the conversation's
   ``push_members``, read with the send's first statement: no extra query).
2. ``expand``: each noted message becomes, per member with a device, one
   ``push_outbox`` row per (recipient, conversation); messages that arrive
   before the row is due join it (the collapse window).
3. ``claim_due`` / ``settle_due``: a due row is decided on (the service's
   rules, with presence) and becomes one ``push_sends`` row per device, whose
   payload is final; ``claim_sends`` / ``settle_sends`` hand those to the
   providers and retry, drop or remove devices by what they answered.

Claims are leases (``lease_until`` and a ``lease`` token, taken with SKIP
LOCKED on PostgreSQL), so with several processes each row is worked on by one
of them, and a process that dies leaves its rows to the others once the lease
ends. A member's ``push_seq`` records the messages already decided on: a
push never covers a message twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hubbub.clock import iso_ms
from hubbub.errors import NotFound
from hubbub.ids import new_id
from hubbub.models import Device, DoNotDisturb, Notifications
from hubbub.store import receipts, records
from hubbub.store.access import membership
from hubbub.store.tx import Row, Tx

MAX_DEVICES = 10
"""Devices per user; registering one more forgets the one updated longest ago."""
MESSAGES_PER_PUSH = 100
"""Messages of one conversation one push reads (its count says "100+" beyond)."""


# Devices and settings ----------------------------------------------------------


USER_LOCKS = 7_160_316
"""The first key of the advisory locks that serialise a user's device changes (PostgreSQL)."""


async def _lock_users(tx: Tx, users: Iterable[str]) -> None:
    """Serialise changes to these users' devices and to their memberships' push flags.

    On PostgreSQL (read committed) a device registered while its user joins a
    conversation could otherwise leave the new membership unflagged (neither
    statement sees the other's uncommitted row), and its pushes lost. Locks
    are taken in one order. SQLite has one writer and needs none.
    """
    wanted = sorted(set(users))
    if tx.dialect.locks_rows and wanted:
        await tx.all(
            f"SELECT pg_advisory_xact_lock({USER_LOCKS}, hashtext(u)) "
            "FROM (SELECT u FROM unnest(?::text[]) AS u ORDER BY u) AS ordered",
            wanted,
        )


async def _refresh_flag(tx: Tx, user: str) -> None:
    """Set ``members.push`` of the user's memberships to whether they have a device.

    A membership flagged now starts at the conversation's newest message: a
    first device brings pushes of what comes next, not of everything unread.
    """
    await tx.run(
        f"UPDATE members SET push = 1, push_seq = {tx.dialect.greatest}(push_seq, "
        "(SELECT last_seq FROM conversations c WHERE c.id = members.conversation_id)) "
        "WHERE user_id = ?1 AND push = 0 "
        "AND EXISTS (SELECT 1 FROM push_devices WHERE user_id = ?1)",
        user,
    )
    await tx.run(
        "UPDATE members SET push = 0 WHERE user_id = ?1 AND push = 1 "
        "AND NOT EXISTS (SELECT 1 FROM push_devices WHERE user_id = ?1)",
        user,
    )


async def flag_members(tx: Tx, cid: str, users: list[str], *, new: bool = False) -> None:
    """Members of ``cid`` just added with a device get ``push = 1``.

    ``new``: ``cid`` was just created and ``users`` are all its members.
    """
    await _lock_users(tx, users)
    sql = (
        "UPDATE members SET push = 1 WHERE conversation_id = ? AND push = 0 "
        "AND EXISTS (SELECT 1 FROM push_devices d WHERE d.user_id = members.user_id)"
    )
    if new:
        await tx.run(sql, cid)
    else:
        among, ids = tx.dialect.in_("user_id", users)
        await tx.run(f"{sql} AND {among}", cid, *ids)


async def register_device(
    tx: Tx, user: str, provider: str, token: str, platform: str, app_id: str | None, now_ms: int
) -> Device:
    """Add a device, or update it (the token is its identity); it moves to ``user``."""
    previous = await tx.value("SELECT user_id FROM push_devices WHERE token = ?", token)
    await _lock_users(tx, [user] if previous is None else [user, previous])
    row = await tx.one(
        "INSERT INTO push_devices (id, token, user_id, provider, platform, app_id, created_at, "
        "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (token) DO UPDATE SET "
        "user_id = excluded.user_id, provider = excluded.provider, "
        "platform = excluded.platform, app_id = excluded.app_id, "
        f"updated_at = excluded.updated_at RETURNING {records.DEVICE_COLUMNS}",
        new_id("d"),
        token,
        user,
        provider,
        platform,
        app_id,
        now_ms,
    )
    assert row is not None
    device = records.device(row)
    if previous is not None and previous != user:
        # The phone changed hands: what was composed for its old user stays theirs.
        await tx.run("DELETE FROM push_sends WHERE device_id = ?", device.id)
        await _refresh_flag(tx, previous)
    offset = "LIMIT -1 OFFSET" if tx.dialect.name == "sqlite" else "OFFSET"
    stale = await tx.all(
        "SELECT id FROM push_devices WHERE user_id = ? AND id <> ? "
        f"ORDER BY updated_at DESC, id {offset} {MAX_DEVICES - 1}",
        user,
        device.id,
    )
    if stale:
        await remove_devices(tx, [r[0] for r in stale])
    await _refresh_flag(tx, user)
    return device


async def list_devices(tx: Tx, user: str) -> list[Device]:
    rows = await tx.all(
        f"SELECT {records.DEVICE_COLUMNS} FROM push_devices WHERE user_id = ? "
        "ORDER BY created_at, id",
        user,
    )
    return [records.device(r) for r in rows]


async def delete_device(tx: Tx, user: str, device_id: str) -> None:
    await _lock_users(tx, [user])
    if not await tx.run("DELETE FROM push_devices WHERE id = ? AND user_id = ?", device_id, user):
        raise NotFound("no such device")
    await tx.run("DELETE FROM push_sends WHERE device_id = ?", device_id)
    await _refresh_flag(tx, user)


async def remove_devices(tx: Tx, device_ids: list[str]) -> int:
    """Forget devices a provider refused for good (and their pending pushes)."""
    if not device_ids:
        return 0
    among, ids = tx.dialect.in_("id", device_ids)
    users = {r[0] for r in await tx.all(f"SELECT user_id FROM push_devices WHERE {among}", *ids)}
    await _lock_users(tx, users)
    removed = await tx.run(f"DELETE FROM push_devices WHERE {among}", *ids)
    among, ids = tx.dialect.in_("device_id", device_ids)
    await tx.run(f"DELETE FROM push_sends WHERE {among}", *ids)
    for user in sorted(users):
        await _refresh_flag(tx, user)
    return removed


async def set_notifications(
    tx: Tx, user: str, cid: str, level: str, until_ms: int | None
) -> Notifications:
    await membership(tx, user, cid)
    await tx.run(
        "UPDATE members SET notify = ?, notify_until = ? WHERE conversation_id = ? AND user_id = ?",
        level,
        until_ms,
        cid,
        user,
    )
    return await get_notifications(tx, user, cid)


async def get_notifications(tx: Tx, user: str, cid: str) -> Notifications:
    await membership(tx, user, cid)
    row = await tx.one(
        "SELECT notify, notify_until FROM members WHERE conversation_id = ? AND user_id = ?",
        cid,
        user,
    )
    assert row is not None
    return Notifications(
        conversation_id=cid, level=row[0], until=None if row[1] is None else iso_ms(row[1])
    )


async def set_dnd(tx: Tx, user: str, until_ms: int | None, now_ms: int) -> DoNotDisturb:
    await tx.run(
        "INSERT INTO users (id, updated_at, dnd_until) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET dnd_until = excluded.dnd_until",
        user,
        now_ms,
        until_ms,
    )
    return DoNotDisturb(until=None if until_ms is None else iso_ms(until_ms))


async def get_dnd(tx: Tx, user: str) -> DoNotDisturb:
    until = await tx.value("SELECT dnd_until FROM users WHERE id = ?", user)
    return DoNotDisturb(until=None if until is None else iso_ms(until))


# The outbox ---------------------------------------------------------------------

NOTE = "INSERT INTO push_events (conversation_id, seq, sender_id, created_at) VALUES (?, ?, ?, ?)"
NOTE_POSTGRESQL = (
    ", p AS (INSERT INTO push_events (conversation_id, seq, sender_id, created_at) "
    "VALUES (?2, ?3, ?4, ?9))"
)
"""The same note, as a statement of the send's CTE (its arguments numbered as the message's)."""


async def note_message(tx: Tx, cid: str, seq: int, sender: str, now_ms: int) -> None:
    """In the send's transaction, when another member has a device: note the message.

    The send knows that from ``conversations.push_members``, which the
    schema's triggers keep equal to the members with ``push = 1``.
    """
    await tx.run(NOTE, cid, seq, sender, now_ms)


async def expand(tx: Tx, now_ms: int, window_ms: int, limit: int) -> int:
    """Turn noted messages into outbox rows, one per recipient and conversation.

    A row is due ``window_ms`` after the oldest message it holds; later ones
    until then raise its ``last_seq`` (one push for the burst). Members who
    muted the conversation get no row at all.
    """
    noted = await tx.all(
        "DELETE FROM push_events WHERE (conversation_id, seq) IN (SELECT conversation_id, seq "
        f"FROM push_events ORDER BY created_at LIMIT ?{tx.dialect.skip_locked()}) "
        "RETURNING conversation_id, seq, sender_id, created_at",
        limit,
    )
    if not noted:
        return 0
    by_conversation: dict[str, list[tuple[int, str, int]]] = {}
    for cid, seq, sender, created in noted:
        by_conversation.setdefault(cid, []).append((seq, sender, created))
    rows = []
    for cid, notes in by_conversation.items():
        muted = "notify = 'none' AND (notify_until IS NULL OR notify_until > ?)"
        # Those who muted it get no row: the messages are decided on (never pushed).
        await tx.run(
            f"UPDATE members SET push_seq = {tx.dialect.greatest}(push_seq, ?) "
            f"WHERE conversation_id = ? AND push = 1 AND {muted}",
            max(seq for seq, _, _ in notes),
            cid,
            now_ms,
        )
        recipients = await tx.all(
            f"SELECT user_id FROM members WHERE conversation_id = ? AND push = 1 AND NOT ({muted})",
            cid,
            now_ms,
        )
        for (user,) in recipients:
            theirs = [(seq, created) for seq, sender, created in notes if sender != user]
            if theirs:
                last = max(seq for seq, _ in theirs)
                first = min(created for _, created in theirs)
                rows.append((new_id("po"), user, cid, last, first, first + window_ms))
    rows.sort(key=lambda r: (r[1], r[2]))  # one order of row locks for every process
    await tx.many(
        "INSERT INTO push_outbox (id, user_id, conversation_id, last_seq, created_at, due_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, conversation_id) DO UPDATE SET "
        f"last_seq = {tx.dialect.greatest}(push_outbox.last_seq, excluded.last_seq), "
        f"created_at = {tx.dialect.least}(push_outbox.created_at, excluded.created_at)",
        rows,
    )
    return len(noted)


@dataclass(slots=True)
class Noted:
    """One message a due push may tell of."""

    id: str
    seq: int
    sender_id: str
    sender_name: str | None
    kind: str
    body: str
    replies_to_recipient: bool


@dataclass(slots=True)
class Due:
    """A due outbox row with what deciding on it needs (``claim_due``)."""

    id: str
    user_id: str
    conversation_id: str
    last_seq: int
    created_at: int
    rechecked: bool
    member: bool = False
    kind: str = "direct"
    title: str | None = None
    level: str = "all"
    level_until: int | None = None
    dnd_until: int | None = None
    messages: list[Noted] = field(default_factory=list)
    """Newest first: not the recipient's, not deleted, after what they read or were told of."""
    more: bool = False
    """More messages than ``messages`` holds."""
    blocked: set[str] = field(default_factory=set)
    """Users either side of a block with the recipient."""
    devices: list[Device] = field(default_factory=list)
    badge: int = 0


async def _claim(
    tx: Tx,
    table: str,
    columns: str,
    now_ms: int,
    lease: str,
    lease_ms: int,
    limit: int,
    where: str = "",
    *args: object,
) -> list[Row]:
    """Lease up to ``limit`` due rows no one holds (``where``: more conditions, with ``args``)."""
    return await tx.all(
        f"UPDATE {table} SET lease_until = ?, lease = ? WHERE id IN "
        f"(SELECT id FROM {table} WHERE due_at <= ? AND lease_until <= ?{where} ORDER BY due_at "
        f"LIMIT ?{tx.dialect.skip_locked()}) RETURNING {columns}",
        now_ms + lease_ms,
        lease,
        now_ms,
        now_ms,
        *args,
        limit,
    )


async def claim_due(tx: Tx, now_ms: int, lease: str, lease_ms: int, limit: int) -> list[Due]:
    """Lease due outbox rows and read what deciding on each needs."""
    claimed = await _claim(
        tx,
        "push_outbox",
        "id, user_id, conversation_id, last_seq, created_at, rechecked",
        now_ms,
        lease,
        lease_ms,
        limit,
    )
    found = []
    people: dict[str, tuple[set[str], list[Device], int]] = {}
    for rid, user, cid, last_seq, created, rechecked in claimed:
        due = Due(
            id=rid,
            user_id=user,
            conversation_id=cid,
            last_seq=last_seq,
            created_at=created,
            rechecked=bool(rechecked),
        )
        await _context(tx, due)
        if due.messages:  # who they block, their devices and unread: once per user
            if user not in people:
                people[user] = await _person(tx, user)
            due.blocked, due.devices, due.badge = people[user]
        found.append(due)
    return found


async def _person(tx: Tx, user: str) -> tuple[set[str], list[Device], int]:
    blocked = {
        r[0]
        for r in await tx.all(
            "SELECT blocked FROM blocks WHERE blocker = ?1 "
            "UNION SELECT blocker FROM blocks WHERE blocked = ?1",
            user,
        )
    }
    return blocked, await list_devices(tx, user), sum((await receipts.unread(tx, user)).values())


async def _context(tx: Tx, due: Due) -> None:
    user, cid = due.user_id, due.conversation_id
    row = await tx.one(
        "SELECT m.read_seq, m.push_seq, m.notify, m.notify_until, c.kind, c.title, u.dnd_until "
        "FROM members m JOIN conversations c ON c.id = m.conversation_id "
        "LEFT JOIN users u ON u.id = m.user_id WHERE m.conversation_id = ? AND m.user_id = ?",
        cid,
        user,
    )
    if row is None:
        return  # no longer a member
    read_seq, push_seq, level, level_until, kind, title, dnd_until = row
    due.member, due.kind, due.title = True, kind, title
    due.level, due.level_until, due.dnd_until = level, level_until, dnd_until
    rows = await tx.all(
        "SELECT m.id, m.seq, m.sender_id, u.name, m.kind, m.body, r.sender_id FROM messages m "
        "LEFT JOIN users u ON u.id = m.sender_id LEFT JOIN messages r ON r.id = m.reply_to "
        "WHERE m.conversation_id = ? AND m.seq > ? AND m.seq <= ? AND m.sender_id <> ? "
        "AND m.deleted_at IS NULL ORDER BY m.seq DESC LIMIT ?",
        cid,
        max(read_seq, push_seq),
        due.last_seq,
        user,
        MESSAGES_PER_PUSH + 1,
    )
    due.more = len(rows) > MESSAGES_PER_PUSH
    due.messages = [
        Noted(
            id=mid,
            seq=seq,
            sender_id=sender,
            sender_name=name,
            kind=mkind,
            body=body,
            replies_to_recipient=replied == user,
        )
        for mid, seq, sender, name, mkind, body, replied in rows[:MESSAGES_PER_PUSH]
    ]


@dataclass(slots=True)
class Decision:
    """What became of a due row: ``payloads`` per device id (none: no push)."""

    due: Due
    recheck_at: int | None = None
    """Look again then (the recipient seemed online) instead of deciding now."""
    payloads: dict[str, str] = field(default_factory=dict)


async def settle_due(
    tx: Tx, lease: str, decisions: list[Decision], now_ms: int, window_ms: int
) -> int:
    """Write what was decided on leased rows; the pushes queued.

    Rows and members are locked in (user, conversation) order, the order
    ``expand`` writes in, so two processes never wait on each other in a cycle.
    """
    decisions = sorted(decisions, key=lambda d: (d.due.user_id, d.due.conversation_id))
    await tx.many(
        "UPDATE push_outbox SET due_at = ?, rechecked = 1, lease_until = 0, lease = NULL "
        "WHERE id = ? AND lease = ?",
        [(d.recheck_at, d.due.id, lease) for d in decisions if d.recheck_at is not None],
    )
    decided = [d for d in decisions if d.recheck_at is None]
    if not decided:
        return 0
    among, ids = tx.dialect.in_("id", [d.due.id for d in decided])
    held = {
        rid: last_seq
        for rid, last_seq in await tx.all(
            f"SELECT id, last_seq FROM push_outbox WHERE lease = ? AND {among} "
            f"ORDER BY user_id, conversation_id{tx.dialect.lock()}",
            lease,
            *ids,
        )
    }
    # Rows whose lease ran out were taken by another process: theirs now.
    decided = [d for d in decided if d.due.id in held]
    await tx.many(
        f"UPDATE members SET push_seq = {tx.dialect.greatest}(push_seq, ?) "
        "WHERE conversation_id = ? AND user_id = ?",
        [(d.due.last_seq, d.due.conversation_id, d.due.user_id) for d in decided],
    )
    done = [d.due.id for d in decided if held[d.due.id] == d.due.last_seq]
    if done:
        among, ids = tx.dialect.in_("id", done)
        await tx.run(f"DELETE FROM push_outbox WHERE {among}", *ids)
    # Newer messages came meanwhile: they are due one window from now.
    await tx.many(
        "UPDATE push_outbox SET due_at = ?, created_at = ?, rechecked = 0, lease_until = 0, "
        "lease = NULL WHERE id = ?",
        [
            (now_ms + window_ms, now_ms, d.due.id)
            for d in decided
            if held[d.due.id] != d.due.last_seq
        ],
    )
    sends = [
        (new_id("p"), device, payload, d.due.created_at, now_ms)
        for d in decided
        for device, payload in d.payloads.items()
    ]
    await tx.many(
        "INSERT INTO push_sends (id, device_id, payload, created_at, due_at) "
        "VALUES (?, ?, ?, ?, ?)",
        sends,
    )
    return len(sends)


@dataclass(slots=True)
class Outgoing:
    """A leased push for one device (``claim_sends``)."""

    id: str
    device: Device
    user_id: str
    payload: str
    created_at: int
    attempts: int


async def claim_sends(
    tx: Tx, now_ms: int, lease: str, lease_ms: int, limit: int, providers: list[str]
) -> list[Outgoing]:
    """Lease due pushes to devices of these providers (those this process can reach)."""
    among, names = tx.dialect.in_("provider", providers)
    claimed = await _claim(
        tx,
        "push_sends",
        "id, device_id, payload, created_at, attempts",
        now_ms,
        lease,
        lease_ms,
        limit,
        f" AND device_id IN (SELECT id FROM push_devices WHERE {among})",
        *names,
    )
    if not claimed:
        return []
    among, ids = tx.dialect.in_("id", list({r[1] for r in claimed}))
    devices = {
        r[0]: (records.device(r[:7]), r[7])
        for r in await tx.all(
            f"SELECT {records.DEVICE_COLUMNS}, user_id FROM push_devices WHERE {among}", *ids
        )
    }
    found, orphans = [], []
    for sid, did, payload, created, attempts in claimed:
        if did not in devices:
            orphans.append((sid,))
            continue
        device, user = devices[did]
        found.append(Outgoing(sid, device, user, payload, created, attempts))
    await tx.many("DELETE FROM push_sends WHERE id = ?", orphans)
    return found


async def renew_sends(tx: Tx, lease: str, ids: list[str], until_ms: int) -> list[str]:
    """Extend the lease of these pushes; the ones still held under it."""
    if not ids:
        return []
    among, args = tx.dialect.in_("id", ids)
    rows = await tx.all(
        f"UPDATE push_sends SET lease_until = ? WHERE lease = ? AND {among} RETURNING id",
        until_ms,
        lease,
        *args,
    )
    return [r[0] for r in rows]


@dataclass(slots=True)
class Ticket:
    """A push Expo accepted, whose receipt is still to be read."""

    id: str
    """Expo's ticket id."""
    push_id: str
    device_id: str
    payload: str
    created_at: int
    attempts: int
    sent_at: int


@dataclass(slots=True)
class Settled:
    """What became of the pushes handed to providers (``settle_sends``)."""

    done: list[str] = field(default_factory=list)
    """Sent, failed for good or too old: forgotten."""
    retry: dict[str, int] = field(default_factory=dict)
    """Push id -> when to try again."""
    gone: list[str] = field(default_factory=list)
    """Device ids the provider said no longer exist."""
    tickets: list[tuple[Ticket, int]] = field(default_factory=list)
    """Tickets, and when to check their receipts."""


async def settle_sends(tx: Tx, lease: str, settled: Settled, now_ms: int) -> None:
    await tx.many(
        "DELETE FROM push_sends WHERE id = ? AND lease = ?", [(s, lease) for s in settled.done]
    )
    await tx.many(
        "UPDATE push_sends SET due_at = ?, attempts = attempts + 1, lease_until = 0, "
        "lease = NULL WHERE id = ? AND lease = ?",
        [(at, s, lease) for s, at in settled.retry.items()],
    )
    await tx.many(
        "INSERT INTO push_tickets (id, push_id, device_id, payload, created_at, attempts, "
        "sent_at, check_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        [
            (t.id, t.push_id, t.device_id, t.payload, t.created_at, t.attempts, t.sent_at, at)
            for t, at in settled.tickets
        ],
    )
    await remove_devices(tx, settled.gone)


async def expire_sends(tx: Tx, before_ms: int, now_ms: int) -> int:
    """Drop pushes of messages older than ``before_ms`` that nobody holds; how many."""
    return await tx.run(
        "DELETE FROM push_sends WHERE created_at < ? AND lease_until <= ?", before_ms, now_ms
    )


async def claim_tickets(tx: Tx, now_ms: int, lease_ms: int, limit: int) -> list[Ticket]:
    """Lease tickets whose receipts are due."""
    rows = await tx.all(
        "UPDATE push_tickets SET check_at = ?1 WHERE id IN (SELECT id FROM push_tickets "
        f"WHERE check_at <= ?2 ORDER BY check_at LIMIT ?3{tx.dialect.skip_locked()}) "
        "RETURNING id, push_id, device_id, payload, created_at, attempts, sent_at",
        now_ms + lease_ms,
        now_ms,
        limit,
    )
    return [Ticket(*r) for r in rows]


async def settle_tickets(tx: Tx, done: list[str], gone: list[str], retry: dict[str, int]) -> None:
    """Forget read tickets, remove gone devices, send again those Expo asked to slow down."""
    await tx.many(
        "INSERT INTO push_sends (id, device_id, payload, created_at, due_at, attempts) "
        "SELECT push_id, device_id, payload, created_at, ?, attempts + 1 FROM push_tickets "
        "WHERE id = ? ON CONFLICT (id) DO NOTHING",
        [(at, t) for t, at in retry.items()],
    )
    await tx.many("DELETE FROM push_tickets WHERE id = ?", [(t,) for t in [*done, *retry]])
    await remove_devices(tx, gone)


COUNT_UP_TO = 100_000
"""The backlog is counted up to this (a larger one reads as this)."""


async def backlog(tx: Tx) -> tuple[int, int | None]:
    """Rows waiting in the outbox's three steps (each counted up to COUNT_UP_TO), and
    the oldest message's time."""
    count, oldest = 0, None
    for table in ("push_events", "push_outbox", "push_sends"):
        count += int(
            await tx.value(f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT {COUNT_UP_TO}) t")
        )
        first = await tx.value(f"SELECT MIN(created_at) FROM {table}")
        if first is not None:
            oldest = int(first) if oldest is None else min(oldest, int(first))
    return count, oldest
