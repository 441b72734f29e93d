"""Presence subscriptions across processes: a watcher on one, its users on another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.scaleout.conftest import Cluster
from tests.services import REDIS_URL, fresh_postgres_sync, need
from tests.support import Client, auth, create_group


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    """Two processes that announce presence only in groups of at most two members."""
    need(REDIS_URL, 6379, "Redis")
    with fresh_postgres_sync() as database_url:
        made = Cluster(tmp_path, database_url, REDIS_URL, 2, HUBBUB_PRESENCE_FANOUT_MAX="2").start()
        yield made
        made.stop()


async def presence_of(client: Client, user: str, timeout: float = 10) -> str:
    while True:
        frame = await client.recv_type("presence", timeout)
        if frame["user_id"] == user:
            return str(frame["status"])


async def test_a_subscription_on_one_process_sees_users_of_another(pair: Cluster) -> None:
    a, b = pair.nodes
    users = ["x0", "x1", "x2", "x3"]
    cid = create_group(a, users[0], users[1:])
    watcher = await Client.connect(a, "x0")
    reply = await watcher.request({"type": "presence", "subscribe": ["x1"]})
    assert reply["presence"][0]["status"] == "offline" and reply["watching"] == 1

    x1 = await Client.connect(b, "x1")
    x2 = await Client.connect(b, "x2")  # not watched: the group is too large to announce
    assert await presence_of(watcher, "x1") == "online"
    # The count is the cluster's, asked of either process (x2's arrival may
    # still be on its way; a count is reused for a second).
    for node in (a, b):
        deadline = time.monotonic() + 5
        while True:
            r = httpx.get(f"{node.url}/api/v1/conversations/{cid}/presence", headers=auth("x3"))
            if r.json()["online"] == 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert r.json() == {"conversation_id": cid, "members": 4, "online": 3}
    await x1.close()
    assert await presence_of(watcher, "x1") == "offline"  # after the grace (0.2 s)
    frames = await watcher.frames_within(0.5)
    assert [f for f in frames if f["type"] == "presence"] == []  # x2 never told
    await x2.close()
    await watcher.close()
