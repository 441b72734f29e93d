"""Operating a real process: /metrics, /api/v1/stats, JSON logs, the exit status."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    Client,
    ServerProcess,
    SseClient,
    auth,
    create_group,
    new_id,
    open_direct,
)

API_KEY = "backend-key-" + "m" * 20
METRICS_TOKEN = "scrape-" + "t" * 20
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}

METRICS = (
    "hubbub_connections",
    "hubbub_online_users",
    "hubbub_sends",
    "hubbub_deliveries",
    "hubbub_send_ack_seconds",
    "hubbub_store_commit_seconds",
    "hubbub_sequencer_gap_fills",
    "hubbub_sequencer_gaps_unfilled",
    "hubbub_session_gap_fills",
    "hubbub_resume_replays",
    "hubbub_connection_closes",
    "hubbub_refusals",
    "hubbub_rate_limited",
    "hubbub_broker_up",
    "hubbub_broker_resyncs",
    "hubbub_broker_publish_lag_seconds",
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def ops_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("hubbub"),
        HUBBUB_API_KEY=API_KEY,
        HUBBUB_METRICS_TOKEN=METRICS_TOKEN,
    ).start()
    yield proc
    proc.stop()


def scrape(server: ServerProcess) -> tuple[set[str], Samples]:
    r = httpx.get(server.url + "/metrics", headers=SCRAPE)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        names.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_are_served_and_move(ops_server: ServerProcess) -> None:
    names, before = scrape(ops_server)
    assert set(METRICS) <= names, set(METRICS) - names

    cid = open_direct(ops_server, "mia", "max")
    mia = await Client.connect(ops_server, "mia")
    max_ = await Client.connect(ops_server, "max")
    await mia.send_message(cid, "over the socket")
    await max_.recv_type("message.new")
    r = httpx.post(
        f"{ops_server.url}/api/v1/conversations/{cid}/messages",
        headers=auth("max"),
        json={"body": "over REST", "client_msg_id": new_id()},
    )
    assert r.status_code == 201
    await mia.recv_type("message.new")
    other = open_direct(ops_server, "ned", "oli")
    refused = await mia.request(
        {"type": "message.send", "conversation_id": other, "body": "x", "client_msg_id": new_id()}
    )
    assert refused["code"] == "forbidden"
    assert httpx.get(ops_server.url + "/api/v1/conversations/c_nope", headers=auth("mia")).is_error
    resume = await mia.request({"type": "resume", "cursors": {cid: 0}})
    assert resume["conversations"][cid]["status"] == "ok"

    _, after = scrape(ops_server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("hubbub_sends_total", transport="ws", result="ok") == 1
    assert moved("hubbub_sends_total", transport="rest", result="ok") == 1
    assert moved("hubbub_sends_total", transport="ws", result="forbidden") == 1
    assert moved("hubbub_refusals_total", transport="ws", code="forbidden") == 1
    assert moved("hubbub_refusals_total", transport="rest", code="not_found") == 1
    assert moved("hubbub_send_ack_seconds_count", transport="ws") == 1  # acked ones only
    assert moved("hubbub_send_ack_seconds_count", transport="rest") == 1
    assert moved("hubbub_resume_replays_total", status="ok") == 1
    # Each message to both members' connections (the sender's own included).
    assert moved("hubbub_deliveries_total") >= 4
    assert moved("hubbub_store_commit_seconds_count", database="sqlite") >= 2
    assert value(after, "hubbub_connections", transport="ws") >= 2
    assert value(after, "hubbub_online_users") >= 2
    assert value(after, "hubbub_broker_up") == 1
    await mia.close()
    await max_.close()


async def test_the_http_fallback_is_counted_as_sse(ops_server: ServerProcess) -> None:
    _, before = scrape(ops_server)
    cid = open_direct(ops_server, "tia", "tom")
    tia = await SseClient.connect(ops_server.url, "tia")
    await tia.send_message(cid, "over the stream")
    _, during = scrape(ops_server)
    assert value(during, "hubbub_connections", transport="sse") == 1
    sent = {"transport": "sse", "result": "ok"}
    assert (
        value(during, "hubbub_sends_total", **sent) - value(before, "hubbub_sends_total", **sent)
        == 1
    )
    await tia.close()


def test_metrics_need_their_token(ops_server: ServerProcess) -> None:
    url = ops_server.url + "/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers=auth("mia")).status_code == 401
    assert httpx.get(url, headers=SCRAPE).status_code == 200


def test_metrics_without_a_token_are_open(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    r = httpx.get(fresh_server.url + "/metrics")
    assert r.status_code == 200 and "hubbub_sends_total" in r.text


async def test_stats_need_the_api_key_alone(fresh_server: ServerProcess) -> None:
    fresh_server.env["HUBBUB_API_KEY"] = API_KEY
    fresh_server.start()
    url = fresh_server.url + "/api/v1/stats"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=auth("pia")).status_code == 401
    assert httpx.get(url, headers={"X-Api-Key": "wrong"}).status_code == 401
    on_behalf = {"X-Api-Key": API_KEY, "X-On-Behalf-Of": "pia"}
    assert httpx.get(url, headers=on_behalf).status_code == 403

    cid = create_group(fresh_server, "pia", ["quin"])
    clients = [
        await Client.connect(fresh_server, "pia"),
        await Client.connect(fresh_server, "pia"),
        await Client.connect(fresh_server, "quin"),
    ]
    await clients[0].send_message(cid, "counted")
    r = httpx.get(url, headers={"X-Api-Key": API_KEY})
    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["node"].startswith("p_")
    assert stats["connections"] == 3
    assert stats["transports"] == {"ws": 3, "sse": 0}
    assert stats["users"] == 2
    per_user = stats["connections_per_user"]
    assert per_user["histogram"] == {"1": 1, "2": 1, "3-5": 0, "6-10": 0, "11+": 0}
    assert per_user["top"] == [
        {"user_id": "pia", "connections": 2},
        {"user_id": "quin", "connections": 1},
    ]
    assert stats["cluster"] is None  # no Redis
    spec = httpx.get(fresh_server.url + "/openapi.json").json()
    assert spec["paths"]["/api/v1/stats"]["get"]["security"] == [{"apiKey": []}]
    for client in clients:
        await client.close()


def test_json_logs(fresh_server: ServerProcess) -> None:
    fresh_server.env.update(HUBBUB_LOG_FORMAT="json", HUBBUB_LOG_LEVEL="info")
    fresh_server.start()
    assert httpx.get(fresh_server.url + "/health").status_code == 200
    fresh_server.stop()
    lines = [line for line in fresh_server.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert records, "no log lines"
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    assert any(r["message"].startswith("hubbub on http://") for r in records)


async def test_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server").start()
    try:
        cid = open_direct(server, "ros", "sam")
        ros = await Client.connect(server, "ros")
        sent = await ros.send_message(cid, "acked before the restart")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        # The server closes the connection as restarting (1012), then exits 0.
        await asyncio.wait_for(ros.ws.wait_closed(), 10)
        assert ros.ws.close_code == 1012
        assert await asyncio.to_thread(server.proc.wait, 15) == 0
        server.proc = None

        server.start()
        r = httpx.get(f"{server.url}/api/v1/conversations/{cid}/messages", headers=auth("sam"))
        assert r.status_code == 200
        assert [m["id"] for m in r.json()["messages"]] == [sent["id"]]
    finally:
        server.stop()
