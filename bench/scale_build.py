"""Builds (and caches) the scale benchmark's store: millions of messages, straight into the schema.

The schema is the server's own (its migrations run first); then every table
the server keeps for a message is filled in bulk, as the send path would have
left it: conversations (last_seq, message_count, last_activity_at), members
(read and delivered pointers), messages (seq, ordinal, tombstones for a few
deleted ones), their stream events, and the full-text index (FTS5 rows by the
schema's own triggers on SQLite, the generated ``body_tsv`` and its GIN index
on PostgreSQL).

The shape: ``messages`` in all, a tenth of them in one conversation (``BIG``),
the rest over ``groups`` conversations; ``ME`` is a member of all of them and
has read nothing, ``READER`` has read everything; each conversation has
``members`` members, who send its messages. Bodies are drawn from a Zipf
vocabulary (real English words first, then made-up ones), so a few words are
in most messages; ``COMMON`` is in about 30% of them, ``RARE`` in exactly
``rare_count`` (or every message when fewer).

The result is cached, keyed by the shape: a
SQLite file under ``--cache`` (renamed into place once complete) and a
PostgreSQL database ``hubbub_scale_<key>`` (built under a temporary name,
renamed once complete). A cache made before a newer revision of the schema is
brought up to date by the server's own migrations when the bench starts it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg

from hubbub import migrations

BUILD_VERSION = 1
"""Bumped when what is built changes, so older caches are not reused."""
ME = "me"
READER = "reader"
COMMON = "meeting"
RARE = "quokka"
T0 = 1_767_225_600_000  # 2026-01-01, ms: the first message; one every STEP_MS
STEP_MS = 2
HEAD_WORDS = (  # noqa: SIM905
    "the to and a i you it of is in that we for on this be can have with are at so just "
    "not what do get all will but if about was my me now like they up see one how out go "
    "know time think there when your back new good make today work need thanks here yes "
    "please also right some want let still no week call then more check look sure day "
    "tomorrow send team yeah well done later update people next first morning night soon "
    "great maybe again last first plan client code review issue fix test build release "
    "deploy doc note idea lunch coffee office home"
).split()
BODY_POOL = 1 << 16


@dataclass(frozen=True)
class Shape:
    messages: int
    groups: int = 1000
    members: int = 1000
    big_share: float = 0.1
    rare_count: int = 100
    deleted_every: int = 997
    seed: int = 1

    @property
    def key(self) -> str:
        raw = repr((BUILD_VERSION, sorted(asdict(self).items())))
        return f"{self.messages}_{hashlib.sha1(raw.encode()).hexdigest()[:8]}"

    @property
    def big(self) -> str:
        return conversation_id(0)

    def groups_ids(self) -> list[str]:
        return [conversation_id(i + 1) for i in range(self.groups)]


def conversation_id(i: int) -> str:
    return f"c_{T0:011x}{i:016x}"


def pool_user(i: int) -> str:
    return f"u{i:05d}"


def vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    tail = {"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(30000)}
    tail -= set(HEAD_WORDS) | {COMMON, RARE}
    words = list(HEAD_WORDS) + sorted(tail)[:20000]
    cumulative, total = [], 0.0
    for rank in range(len(words)):
        total += 1 / (rank + 2.7)
        cumulative.append(total)
    return words, cumulative


def bodies(rng: random.Random) -> list[str]:
    words, cumulative = vocabulary(rng)
    pool = []
    for _ in range(BODY_POOL):
        chosen = rng.choices(words, cum_weights=cumulative, k=rng.randint(3, 18))
        if rng.random() < 0.3:
            chosen.insert(rng.randrange(len(chosen) + 1), COMMON)
        text = " ".join(chosen)
        pool.append(text[0].upper() + text[1:] + rng.choice((".", "", "?", "!")))
    return pool


@dataclass
class Conv:
    cid: str
    members: list[str]
    senders: list[str]
    seq: int = 0
    count: int = 0
    last_at: int = T0


def conversations(shape: Shape) -> list[Conv]:
    others = shape.members - 2
    pool = max(2 * others, 1)
    convs = []
    for i, cid in enumerate([shape.big, *shape.groups_ids()]):
        start = (i * 37) % pool
        people = [pool_user((start + k) % pool) for k in range(others)]
        convs.append(Conv(cid, [ME, READER, *people], people or [READER]))
    return convs


Row = tuple[object, ...]


def stream(
    shape: Shape, convs: list[Conv], chunk: int = 20000
) -> Iterator[tuple[list[Row], list[Row]]]:
    """Chunks of (message rows, event rows), oldest first; updates ``convs`` as it goes."""
    rng = random.Random(shape.seed)
    pool = bodies(rng)
    rare_every = max(shape.messages // max(shape.rare_count, 1), 1)
    big, groups = convs[0], convs[1:]
    msgs: list[Row] = []
    events: list[Row] = []
    for k in range(shape.messages):
        conv = big if rng.random() < shape.big_share or not groups else rng.choice(groups)
        at = T0 + k * STEP_MS
        conv.seq += 1
        conv.count += 1
        conv.last_at = at
        mid = f"m_{at:011x}{k:016x}"
        body = pool[rng.getrandbits(16)]
        if k % rare_every == rare_every // 2:
            body = f"{body} {RARE}"
        sender = conv.senders[rng.randrange(len(conv.senders))]
        deleted = shape.deleted_every and k % shape.deleted_every == shape.deleted_every - 1
        msgs.append(
            (
                mid,
                conv.cid,
                conv.seq,
                sender,
                "" if deleted else body,
                f"b{k:x}",
                at,
                at if deleted else None,
                sender if deleted else None,
                conv.count,
            )
        )
        events.append((conv.cid, conv.seq, "message.new", mid, None, at))
        if deleted:
            conv.seq += 1
            events.append(
                (conv.cid, conv.seq, "message.deleted", mid, f'{{"deleted_by":"{sender}"}}', at)
            )
        if len(msgs) >= chunk:
            yield msgs, events
            msgs, events = [], []
    if msgs:
        yield msgs, events


def people_rows(shape: Shape, convs: list[Conv]) -> tuple[list[Row], list[Row], list[Row]]:
    """(users, conversations, members) once every message is counted."""
    names = {ME, READER, *(u for c in convs for u in c.members)}
    users: list[Row] = [(u, f"User {u}", T0) for u in sorted(names)]
    rows: list[Row] = [
        (c.cid, "group", f"Group {i}", ME, T0, c.seq, c.last_at, c.count)
        for i, c in enumerate(convs)
    ]
    members: list[Row] = []
    for c in convs:
        for u in c.members:
            read = 0 if u == ME else c.seq
            members.append((c.cid, u, "owner" if u == ME else "member", T0, read, read))
    return users, rows, members


MESSAGE_COLS = (
    "id, conversation_id, seq, sender_id, body, client_msg_id, created_at, deleted_at, "
    "deleted_by, ordinal"
)
EVENT_COLS = "conversation_id, seq, type, message_id, data, created_at"
CONV_COLS = "id, kind, title, created_by, created_at, last_seq, last_activity_at, message_count"
MEMBER_COLS = "conversation_id, user_id, role, joined_at, read_seq, delivered_seq"


def marks(cols: str) -> str:
    return ", ".join("?" * len(cols.split(",")))


def build_sqlite(shape: Shape, cache: Path, log: bool = True) -> Path:
    """The cached SQLite file for ``shape``, built first if missing."""
    final = cache / f"scale_{shape.key}.db"
    if final.exists():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"scale_{shape.key}.building.db"
    for leftover in cache.glob(f"scale_{shape.key}.building.db*"):
        leftover.unlink()
    started = time.monotonic()
    migrations.upgrade(f"sqlite:///{partial}")
    conn = sqlite3.connect(partial, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("BEGIN")
    # The index is made in one pass at the end ('rebuild'), twice as fast as
    # row by row through the trigger, which is then put back as it was.
    (trigger,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'messages_fts_insert'"
    ).fetchone()
    conn.execute("DROP TRIGGER messages_fts_insert")
    convs = conversations(shape)
    done = 0
    for msgs, events in stream(shape, convs):
        conn.executemany(
            f"INSERT INTO messages ({MESSAGE_COLS}) VALUES ({marks(MESSAGE_COLS)})", msgs
        )
        conn.executemany(f"INSERT INTO events ({EVENT_COLS}) VALUES ({marks(EVENT_COLS)})", events)
        done += len(msgs)
        if log and done % 1_000_000 < len(msgs):
            print(f"    sqlite: {done:,} messages, {time.monotonic() - started:.0f} s", flush=True)
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
    conn.execute(trigger)
    users, rows, members = people_rows(shape, convs)
    conn.executemany("INSERT INTO users (id, name, updated_at) VALUES (?, ?, ?)", users)
    conn.executemany(f"INSERT INTO conversations ({CONV_COLS}) VALUES ({marks(CONV_COLS)})", rows)
    conn.executemany(f"INSERT INTO members ({MEMBER_COLS}) VALUES ({marks(MEMBER_COLS)})", members)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    # Written with synchronous=OFF: gigabytes still dirty in the page cache
    # would make the server's first checkpoint wait for all of them (sends
    # of the first rounds measured with p99s of 77-395 ms).
    durable(partial)
    partial.rename(final)
    if log:
        size = final.stat().st_size / 1e9
        print(f"    sqlite: built {final} ({size:.1f} GB) in {time.monotonic() - started:.0f} s")
    return final


def durable(path: Path) -> None:
    """Wait until ``path`` is on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def build_postgres(shape: Shape, admin_url: str, log: bool = True) -> str:
    """The URL of the cached PostgreSQL database for ``shape``, built first if missing."""
    name = f"hubbub_scale_{shape.key}"
    base = admin_url.rsplit("/", 1)[0]
    admin = await asyncpg.connect(admin_url)
    try:
        if await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return f"{base}/{name}"
        partial = f"{name}_building"
        await admin.execute(f'DROP DATABASE IF EXISTS "{partial}"')
        await admin.execute(f'CREATE DATABASE "{partial}"')
        started = time.monotonic()
        url = f"{base}/{partial}"
        await asyncio.to_thread(migrations.upgrade, url)
        await _fill_postgres(shape, url, started, log)
        await admin.execute("CHECKPOINT")  # on disk now, not at the first timed sends
        await admin.execute(f'ALTER DATABASE "{partial}" RENAME TO "{name}"')
        if log:
            size = await admin.fetchval(f"SELECT pg_size_pretty(pg_database_size('{name}'))")
            print(f"    postgresql: built {name} ({size}) in {time.monotonic() - started:.0f} s")
        return f"{base}/{name}"
    finally:
        await admin.close()


async def _fill_postgres(shape: Shape, url: str, started: float, log: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        # Bulk: no triggers nor foreign-key checks while copying (the rows are
        # consistent by construction), and the big tables' indexes and
        # constraints dropped, then made again exactly as they were.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        remake = []
        for table in ("messages", "events"):
            for cname, definition in await conn.fetch(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = $1::regclass AND contype IN ('p', 'u')",
                table,
            ):
                remake.append(f'ALTER TABLE {table} ADD CONSTRAINT "{cname}" {definition}')
            for iname, definition in await conn.fetch(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = $1 "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
                table,
            ):
                remake.append(definition)
                await conn.execute(f'DROP INDEX "{iname}"')
        referenced = await conn.fetch(
            "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'f' "
            "AND confrelid IN ('messages'::regclass, 'events'::regclass)"
        )
        for cname, table, _ in referenced:
            await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{cname}"')
        for table in ("messages", "events"):
            for (cname,) in await conn.fetch(
                "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass "
                "AND contype IN ('p', 'u')",
                table,
            ):
                await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{cname}"')
        convs = conversations(shape)
        done = 0
        message_cols = [c.strip() for c in MESSAGE_COLS.split(",")]
        event_cols = [c.strip() for c in EVENT_COLS.split(",")]
        for msgs, events in stream(shape, convs, chunk=50000):
            await conn.copy_records_to_table("messages", records=msgs, columns=message_cols)
            await conn.copy_records_to_table("events", records=events, columns=event_cols)
            done += len(msgs)
            if log and done % 1_000_000 < len(msgs):
                print(f"    postgresql: {done:,} messages, {time.monotonic() - started:.0f} s")
        users, rows, members = people_rows(shape, convs)
        await conn.copy_records_to_table(
            "users", records=users, columns=["id", "name", "updated_at"]
        )
        await conn.copy_records_to_table(
            "conversations", records=rows, columns=[c.strip() for c in CONV_COLS.split(",")]
        )
        await conn.copy_records_to_table(
            "members", records=members, columns=[c.strip() for c in MEMBER_COLS.split(",")]
        )
        for statement in remake:
            if log:
                print(f"    postgresql: {statement[:90]}", flush=True)
            await conn.execute(statement)
        for cname, table, definition in referenced:
            await conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{cname}" {definition}')
        await conn.execute("RESET session_replication_role")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
