"""The limits hold across three processes on one Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.scaleout.conftest import Cluster, PrivateRedis
from tests.services import REDIS_URL, fresh_postgres_sync, need
from tests.support import Client, ServerProcess, SseClient, create_group, new_id, token


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three processes; per user a send a second (six at once) and three connections."""
    need(REDIS_URL, 6379, "Redis")
    root: Path = tmp_path_factory.mktemp("limits-cluster")
    with fresh_postgres_sync() as database_url:
        made = Cluster(
            root,
            database_url,
            REDIS_URL,
            3,
            HUBBUB_SEND_RATE="1",
            HUBBUB_SEND_BURST="6",
            HUBBUB_MAX_CONNECTIONS_PER_USER="3",
        ).start()
        yield made
        made.stop()


async def refused(node: ServerProcess, user: str) -> dict[str, Any]:
    with pytest.raises(InvalidStatus) as refusal:
        await websockets.connect(f"{node.ws_url}?token={token(user)}")
    assert refusal.value.response.status_code == 429
    return dict(json.loads(refusal.value.response.body))


async def connect_soon(node: ServerProcess, user: str, within: float) -> Client:
    deadline = time.monotonic() + within
    while True:
        try:
            return await Client.connect(node, user)
        except InvalidStatus:
            assert time.monotonic() < deadline, "the place was not freed in time"
            await asyncio.sleep(0.1)


def send_frame(cid: str) -> dict[str, Any]:
    return {"type": "message.send", "conversation_id": cid, "body": "hi", "client_msg_id": new_id()}


async def test_connections_spread_over_the_processes_are_counted_together(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.nodes
    first = await Client.connect(a, "cu")
    await SseClient.connect(b.url, "cu")
    await Client.connect(c, "cu")
    for node in cluster.nodes:
        assert (await refused(node, "cu"))["error"]["code"] == "too_many_connections"
    stream = httpx.get(a.url + "/sse", headers={"Authorization": "Bearer " + token("cu")})
    assert stream.status_code == 429
    await first.close()
    await connect_soon(b, "cu", within=5)  # a place freed on one process, taken on another
    await refused(c, "cu")


async def test_sends_spread_over_the_processes_share_one_bucket(cluster: Cluster) -> None:
    cid = create_group(cluster.nodes[0], "su", ["sv"])
    clients = [await Client.connect(node, "su") for node in cluster.nodes]
    for client in clients:
        for _ in range(2):
            assert (await client.request(send_frame(cid)))["type"] == "ack"
    replies = [await client.request(send_frame(cid)) for client in clients]
    assert [r.get("code") for r in replies] == ["rate_limited"] * 3
    response = httpx.post(
        f"{cluster.nodes[1].url}/api/v1/conversations/{cid}/messages",
        headers={"Authorization": "Bearer " + token("su")},
        json={"body": "hi", "client_msg_id": new_id()},
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    wait = max(r["retry_after_ms"] for r in replies)
    assert 0 < wait <= 1000
    await asyncio.sleep(wait / 1000)
    assert (await clients[2].request(send_frame(cid)))["type"] == "ack"


async def test_a_killed_process_gives_its_places_back_within_the_ttl(cluster: Cluster) -> None:
    a, c = cluster.nodes[0], cluster.nodes[2]
    for _ in range(3):
        await Client.connect(c, "ku")
    await refused(a, "ku")
    c.kill()
    killed_at = time.monotonic()
    await connect_soon(a, "ku", within=5)
    assert time.monotonic() - killed_at < 1.5 + 1.0  # HUBBUB_PRESENCE_TTL, and a margin


@pytest.fixture
def on_private_redis(tmp_path: Path, private_redis: PrivateRedis) -> Iterator[Cluster]:
    """One process, on a Redis the test may stop."""
    with fresh_postgres_sync() as database_url:
        made = Cluster(
            tmp_path,
            database_url,
            private_redis.url,
            1,
            HUBBUB_SEND_RATE="1",
            HUBBUB_SEND_BURST="2",
            HUBBUB_MAX_CONNECTIONS_PER_USER="1",
        ).start()
        yield made
        made.stop()


async def test_without_redis_the_limits_let_everything_through(
    on_private_redis: Cluster, private_redis: PrivateRedis
) -> None:
    node = on_private_redis.nodes[0]
    cid = create_group(node, "fo", ["fp"])
    client = await Client.connect(node, "fo")
    for _ in range(2):
        assert (await client.request(send_frame(cid)))["type"] == "ack"
    assert (await client.request(send_frame(cid)))["code"] == "rate_limited"
    await refused(node, "fo")
    private_redis.stop()
    for _ in range(5):  # fail open: no limit while Redis is away
        assert (await client.request(send_frame(cid)))["type"] == "ack"
    await Client.connect(node, "fo")
    assert node.log.read_text().count("limits: redis unreachable") == 1
