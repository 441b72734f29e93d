"""/api/v1/stats and /metrics of processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scaleout.conftest import Cluster
from tests.services import REDIS_URL, fresh_postgres_sync, need
from tests.support import Client, ServerProcess, create_group

API_KEY = "backend-key-" + "c" * 20


def sample(server: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    need(REDIS_URL, 6379, "Redis")
    with fresh_postgres_sync() as database_url:
        made = Cluster(tmp_path, database_url, REDIS_URL, 2, HUBBUB_API_KEY=API_KEY).start()
        yield made
        made.stop()


async def test_stats_count_the_cluster_and_metrics_the_relay(pair: Cluster) -> None:
    one, two = pair.nodes
    cid = create_group(one, "uma", ["val", "wes"])
    clients = [
        await Client.connect(one, "uma"),
        await Client.connect(two, "val"),
        await Client.connect(two, "wes"),
    ]
    await asyncio.sleep(0.3)  # presence reaches Redis
    stats = httpx.get(one.url + "/api/v1/stats", headers={"X-Api-Key": API_KEY}).json()
    assert stats["connections"] == 1 and stats["users"] == 1
    assert stats["cluster"] == {"processes": 2, "online_users": 3}

    received = sample(two, "hubbub_broker_received_total")
    await clients[0].send_message(cid, "across")
    for client in clients[1:]:
        await client.recv_type("message.new")
    assert sample(two, "hubbub_broker_received_total") > received
    assert sample(one, "hubbub_broker_published_total") >= 1
    assert sample(one, "hubbub_store_commit_seconds_count", database="postgresql") > 0
    assert sample(one, "hubbub_broker_up") == 1
    for client in clients:
        await client.close()
