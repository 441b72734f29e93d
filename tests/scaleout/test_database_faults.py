"""PostgreSQL under contention and restarts: no deadlock, every command answered, none doubled."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from hubbub.models import Message, SendItem
from hubbub.store.base import Appended
from hubbub.store.postgres import PostgresStore
from tests.scaleout.conftest import PrivatePostgres
from tests.services import fresh_postgres, fresh_postgres_sync
from tests.support import Client, ServerProcess, auth, create_group, new_id


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with fresh_postgres_sync() as url:
        proc = ServerProcess(tmp_path / "server", HUBBUB_DATABASE_URL=url).start()
        proc.database_url = url  # type: ignore[attr-defined]
        yield proc
        proc.stop()


async def pipeline(
    client: Client, frames: list[dict[str, Any]], timeout: float = 20
) -> dict[Any, Any]:
    """Send every frame at once; return each one's reply (ack or error) by id."""
    ids = [await client.send(frame) for frame in frames]
    replies: dict[Any, Any] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(replies) < len(ids):
        frame = await client.recv(timeout=max(0.01, deadline - loop.time()))
        if frame["type"] in ("ack", "error") and frame.get("id") in ids:
            replies[frame["id"]] = frame
    return replies


def sends(cids: list[str], count: int, keys: list[str] | None = None) -> list[dict[str, Any]]:
    keys = keys or [new_id() for _ in range(count)]
    return [
        {
            "type": "message.send",
            "conversation_id": cids[i % len(cids)],
            "body": f"b{i}",
            "client_msg_id": keys[i],
        }
        for i in range(count)
    ]


async def stored_keys(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT client_msg_id, COUNT(*) FROM messages GROUP BY 1")
    finally:
        await conn.close()
    return {key: count for key, count in rows}


async def test_batches_spanning_conversations_in_opposite_orders_never_deadlock(
    pg_server: ServerProcess,
) -> None:
    users = [f"dl{i}" for i in range(10)]
    first = create_group(pg_server, users[0], users[1:], "one")
    second = create_group(pg_server, users[0], users[1:], "two")
    clients = [await Client.connect(pg_server, u) for u in users]
    for c in clients:
        await c.request({"type": "ping"})
    per_client = 40
    # Half the senders go one, two, one, ...; the others two, one, two, ...:
    # each client's queued sends are committed as batches spanning both.
    batches = [
        sends([first, second] if i % 2 else [second, first], per_client)
        for i in range(len(clients))
    ]
    answers = await asyncio.gather(*(pipeline(c, b) for c, b in zip(clients, batches, strict=True)))
    for replies in answers:
        assert [r["type"] for r in replies.values()] == ["ack"] * per_client, replies
    url = pg_server.database_url  # type: ignore[attr-defined]
    counts = await stored_keys(url)
    keys = [f["client_msg_id"] for b in batches for f in b]
    conn = await asyncpg.connect(url)
    try:  # none happened, not even one a retry hid (a backend reports within a second)
        await asyncio.sleep(1.1)
        assert await deadlocks(conn) == 0
    finally:
        await conn.close()
    assert sorted(counts) == sorted(keys) and set(counts.values()) == {1}
    for c in clients:
        await c.close()
    log = pg_server.log.read_text()
    assert "deadlock" not in log.lower() and "Traceback" not in log, log


def accepted(results: list[Appended]) -> list[tuple[Message, bool]]:
    """Each item's ``(message, created)``: the store refused none of them."""
    refused = [r for r in results if isinstance(r, Exception)]
    assert not refused, refused
    return [r for r in results if not isinstance(r, Exception)]


async def test_a_deadlocked_send_is_retried_and_stored_once() -> None:
    async with fresh_postgres() as url:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        try:
            a = (await store.create_group("ow", "a", [], 1)).id
            b = (await store.create_group("ow", "b", [], 1)).id
            low, high = sorted([a, b])
            items = [SendItem(low, "to low", "k1"), SendItem(high, "to high", "k2")]
            other = await asyncpg.connect(url)
            try:
                # The store's batch locks low, then waits for high, which this
                # connection holds; then this one asks for low: a deadlock. This
                # side waits longer before checking, so the store's transaction
                # is the one PostgreSQL aborts.
                await other.execute("SET deadlock_timeout = '20s'")
                before = await deadlocks(other)
                tx = other.transaction()
                await tx.start()
                await other.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", high)
                send = asyncio.create_task(store.append_messages("ow", items, 2))
                await waiting_for_lock(other, 1)
                locked = asyncio.create_task(
                    other.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", low)
                )
                await asyncio.wait_for(locked, 10)  # granted once the store's attempt is aborted
                await tx.commit()
                results = accepted(await asyncio.wait_for(send, 10))
                assert [(r[0].body, r[1]) for r in results] == [("to low", True), ("to high", True)]
                assert await deadlocks(other, above=before) > before, "no deadlock happened"
            finally:
                await other.close()
            # A retry by the client returns the stored messages; nothing is doubled.
            again = accepted(await store.append_messages("ow", items, 3))
            assert [(r[0].id, r[1]) for r in again] == [(r[0].id, False) for r in results]
            assert await stored_keys(url) == {"k1": 1, "k2": 1}
        finally:
            await store.close()


async def deadlocks(conn: asyncpg.Connection, above: int | None = None) -> int:
    """Deadlocks PostgreSQL counted in this database (waits for the count to pass ``above``)."""
    for _ in range(50):
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        count = int(
            await conn.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
        )
        if above is None or count > above:
            return count
        await asyncio.sleep(0.1)
    return count


async def waiting_for_lock(conn: asyncpg.Connection, count: int) -> None:
    for _ in range(200):
        waiting = await conn.fetchval(
            "SELECT COUNT(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the store's transaction never waited for the lock")


@pytest.mark.parametrize("mode", ["immediate", "fast"])
async def test_a_database_restart_answers_every_command_with_unavailable(
    tmp_path: Path, private_postgres: PrivatePostgres, mode: str
) -> None:
    server = ServerProcess(tmp_path / "server", HUBBUB_DATABASE_URL=private_postgres.url).start()
    try:
        cid = create_group(server, "pr", ["ps"])
        client = await Client.connect(server, "pr")
        early = await client.send_message(cid, "before the restart", "early")

        private_postgres.stop(mode)
        keys = [f"k{i}" for i in range(6)]
        replies = await pipeline(client, sends([cid], 6, keys))
        assert {r["type"] for r in replies.values()} == {"error"}
        assert {r["code"] for r in replies.values()} == {"unavailable"}
        resumed = await client.request({"type": "resume", "cursors": {cid: 0}})
        assert resumed["type"] == "error" and resumed["code"] == "unavailable"
        # Connecting now records a display name and announces presence: both
        # fail, each with one line in the log.
        other = await Client.connect(server, "ps", name="Pat")
        await other.request({"type": "ping"})
        await other.close()
        health = httpx.get(server.url + "/health", timeout=5)
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        r = httpx.get(
            server.url + f"/api/v1/conversations/{cid}/messages", headers=auth("pr"), timeout=5
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"

        private_postgres.start()
        for _ in range(100):  # the pool reconnects on the next use
            if httpx.get(server.url + "/health", timeout=5).status_code == 200:
                break
            await asyncio.sleep(0.05)
        replies = await pipeline(client, sends([cid], 6, keys))
        assert [(r["type"], r.get("duplicate")) for r in replies.values()] == [("ack", False)] * 6
        retried = await client.request(
            {"type": "message.send", "conversation_id": cid, "body": "x", "client_msg_id": "early"}
        )
        assert retried["duplicate"] is True and retried["message"]["id"] == early["id"]
        counts = await stored_keys(private_postgres.url)
        assert counts == {"early": 1, **dict.fromkeys(keys, 1)}
        await client.close()
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and "internal" not in log, log
    assert "unavailable" in log  # one short line per refusal
