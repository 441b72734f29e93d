"""Connection lifecycle: heartbeats, token expiry, slow consumers, health, spec."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import InProcess
from tests.support import (
    SECRET,
    Client,
    RawClient,
    ServerProcess,
    auth,
    create_group,
    new_id,
    token,
)


async def test_heartbeat_pings_idle_connection_and_closes_silent_one(in_process: InProcess) -> None:
    raw = await RawClient.connect(in_process.port, "quiet")
    opcode, hello = await raw.frame()
    assert json.loads(hello)["heartbeat_interval_ms"] == 30_000
    gateway = in_process.app.gateway

    in_process.clock.advance(29)
    gateway.sweep()
    in_process.clock.advance(2)
    gateway.sweep()
    opcode, _ = await raw.frame()
    assert opcode == 0x9  # ping after 30 s idle
    in_process.clock.advance(9)
    gateway.sweep()
    assert len(gateway.hub) == 1  # still within the 10 s to answer
    in_process.clock.advance(2)
    gateway.sweep()
    assert await raw.close_code() == 4408
    closes = {"transport": "ws", "reason": "heartbeat"}
    registry = in_process.app.metrics.registry
    assert registry.get_sample_value("hubbub_connection_closes_total", closes) == 1
    await raw.close()


async def test_a_failed_connection_left_open_leaves_the_heartbeat_alone(
    in_process: InProcess,
) -> None:
    # A client that breaks the protocol and keeps its socket open is failed
    # (1002) and half-closed: it no longer counts, is never pinged, and the
    # heartbeat pass still reaches the other connections.
    broken = await RawClient.connect(in_process.port, "breaker")
    await broken.frame()  # hello
    quiet = await RawClient.connect(in_process.port, "quiet")
    await quiet.frame()
    gateway = in_process.app.gateway
    in_process.clock.advance(31)  # both idle past the heartbeat interval
    broken.writer.write(b"\x81\x02hi")  # unmasked: a protocol error
    assert await broken.close_code() == 1002
    for _ in range(100):
        if len(gateway.hub) == 1:
            break
        await asyncio.sleep(0.01)
    assert len(gateway.hub) == 1  # the failed one no longer counts
    gateway.sweep()
    opcode, _ = await quiet.frame()
    assert opcode == 0x9  # the other still got its ping
    await broken.close()
    await quiet.close()


async def test_answering_client_stays_connected(in_process: InProcess) -> None:
    c = await Client.connect_url(f"ws://127.0.0.1:{in_process.port}/ws", "chatty")
    gateway = in_process.app.gateway
    for _ in range(5):
        in_process.clock.advance(31)
        gateway.sweep()
        await asyncio.sleep(0.05)  # the client's library answers the ping
        in_process.clock.advance(5)
        gateway.sweep()
    assert await c.request({"type": "ping"}) == {"type": "ack", "id": 1}
    await c.close()


async def test_token_expiring_mid_connection_closes_it(in_process: InProcess) -> None:
    short = token("brief", ttl=60, now=in_process.clock.now())
    c = await Client.connect_url(f"ws://127.0.0.1:{in_process.port}/ws", "brief", tok=short)
    in_process.clock.advance(59)
    in_process.app.gateway.sweep()
    assert (await c.request({"type": "ping"}))["type"] == "ack"
    in_process.clock.advance(2)
    in_process.app.gateway.sweep()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await c.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_real_process_closes_silent_connection(fresh_server: ServerProcess) -> None:
    fresh_server.env.update(HUBBUB_HEARTBEAT_INTERVAL="0.2", HUBBUB_HEARTBEAT_TIMEOUT="0.2")
    fresh_server.start()
    raw = await RawClient.connect(fresh_server.port, "silent")
    assert await raw.close_code(timeout=5) == 4408
    await raw.close()


async def test_slow_consumer_is_closed_and_others_are_not_stalled(
    fresh_server: ServerProcess,
) -> None:
    fresh_server.env["HUBBUB_OUTBOUND_BUFFER_BYTES"] = str(256 * 1024)
    fresh_server.start()
    cid = create_group(fresh_server, "fast", ["slow", "steady"])
    slow = await RawClient.connect(fresh_server.port, "slow", rcvbuf=4096)
    await slow.send_text('{"type": "ping", "id": 1}')  # then it stops reading
    steady = await Client.connect(fresh_server, "steady")
    sender = await Client.connect(fresh_server, "fast")
    await steady.request({"type": "ping"})
    body = "s" * 3900
    sent = acks = got = 0

    async def read_acks() -> None:
        nonlocal acks
        while True:
            acks += (await sender.recv(timeout=10))["type"] == "ack"

    async def read_steady() -> None:
        nonlocal got
        while True:
            got += (await steady.recv(timeout=10))["type"] == "message.new"

    readers = [asyncio.create_task(read_acks()), asyncio.create_task(read_steady())]
    # Send until the server gives up on the slow reader (bounded: 80 MB at most).
    while sent < 20_000:
        if sent % 500 == 0 and httpx.get(fresh_server.url + "/health").json()["connections"] == 2:
            break
        while sent - acks >= 32:  # a well-behaved sender keeps a window
            await asyncio.sleep(0.001)
        await sender.send(
            {
                "type": "message.send",
                "conversation_id": cid,
                "body": body,
                "client_msg_id": f"s{sent}",
            }
        )
        sent += 1
    assert httpx.get(fresh_server.url + "/health").json()["connections"] == 2
    assert await slow.close_code(timeout=10) == 4409
    metrics = httpx.get(fresh_server.url + "/metrics").text
    assert 'hubbub_connection_closes_total{reason="slow_consumer",transport="ws"} 1.0' in metrics
    # The others were never held up: everything sent reaches the steady reader.
    for _ in range(1000):
        if got == sent:
            break
        await asyncio.sleep(0.01)
    assert got == sent and acks == sent
    for task in readers:
        task.cancel()


async def test_a_slow_reader_gets_every_event_intact_and_in_order(
    fresh_server: ServerProcess,
) -> None:
    # While a connection's socket is full, events wait in its writer and
    # transport. When the socket drains a little, the next event must still
    # queue behind them, never go to the socket ahead of them (that would
    # splice one frame into another, or reorder them).
    fresh_server.env["HUBBUB_OUTBOUND_BUFFER_BYTES"] = str(64 * 1024 * 1024)
    fresh_server.start()
    cid = create_group(fresh_server, "talker", ["slow"])
    slow = await RawClient.connect(fresh_server.port, "slow", rcvbuf=4096)
    await slow.send_text('{"type": "ping", "id": 1}')
    talker = await Client.connect(fresh_server, "talker")
    total = 1500  # 5.8 MB: more than the kernel buffers of both sides take
    bodies: list[str] = []
    seqs: list[int] = []

    async def read_slowly() -> None:
        while len(seqs) < total:
            opcode, payload = await slow.frame(timeout=20)
            if opcode != 0x1:
                continue
            event = json.loads(payload)  # a spliced frame would not parse
            if event["type"] == "message.new":
                bodies.append(event["message"]["body"][:4])
                seqs.append(event["message"]["seq"])
                if len(seqs) % 16 == 0:
                    await asyncio.sleep(0.002)  # slower than the talker

    reader = asyncio.create_task(read_slowly())
    for i in range(total):  # one at a time: each is sent at once where it can be
        await talker.send_message(cid, f"{i:04d}" + "p" * 3800)
    await asyncio.wait_for(reader, 60)
    assert seqs == list(range(1, total + 1))
    assert bodies == [f"{i:04d}" for i in range(total)]


async def test_concurrent_direct_creation_makes_one_conversation(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:

        async def open_(user: str, other: str) -> httpx.Response:
            return await client.post(
                "/api/v1/conversations",
                headers=auth(user),
                json={"kind": "direct", "members": [other]},
            )

        replies = await asyncio.gather(
            *(open_("da", "db") if i % 2 else open_("db", "da") for i in range(30))
        )
    assert {r.json()["conversation"]["id"] for r in replies} == {
        replies[0].json()["conversation"]["id"]
    }
    assert sorted(r.status_code for r in replies) == [200] * 29 + [201]
    listed = httpx.get(f"{server.url}/api/v1/conversations", headers=auth("da")).json()
    assert len([c for c in listed["conversations"] if c["kind"] == "direct"]) == 1


def test_health_and_openapi(server: ServerProcess, http: httpx.Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    spec = http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    paths = spec["paths"]
    assert set(paths["/api/v1/conversations"]) == {"get", "post"}
    assert set(paths["/api/v1/conversations/{conversation_id}/messages"]) == {"get", "post"}
    post = paths["/api/v1/conversations/{conversation_id}/messages"]["post"]
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body_schema = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert set(body_schema["required"]) == {"client_msg_id"}
    assert {"body", "kind", "attachments", "reply_to"} <= set(body_schema["properties"])
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "X-Api-Key"
    ids = [op["operationId"] for path in paths.values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert {"201", "200", "401", "403", "404", "413", "422"} <= set(post["responses"])


def test_display_name_from_token(server: ServerProcess, http: httpx.Client) -> None:
    r = http.post(
        "/api/v1/conversations",
        headers=auth("na", name="Nadia"),
        json={"kind": "group", "title": "names", "members": ["nb"]},
    )
    members = {m["user_id"]: m for m in r.json()["conversation"]["members"]}
    assert members["na"]["name"] == "Nadia" and members["na"]["role"] == "owner"
    assert members["nb"]["name"] is None and members["nb"]["role"] == "member"
    cid = r.json()["conversation"]["id"]
    http.post(
        f"/api/v1/conversations/{cid}/messages",
        headers=auth("na", name="Nadia R."),
        json={"body": "renamed", "client_msg_id": new_id()},
    )
    again = http.get(f"/api/v1/conversations/{cid}", headers=auth("nb")).json()
    assert {m["user_id"]: m["name"] for m in again["conversation"]["members"]}["na"] == "Nadia R."


def test_production_refuses_to_start_without_secret(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HUBBUB_ENV": "production", "HUBBUB_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "hubbub", "run"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "HUBBUB_JWT_SECRET" in done.stderr
    assert not (tmp_path / "dev-jwt-secret").exists()


async def test_dev_secret_is_shared_by_server_and_token_command(
    fresh_server: ServerProcess,
) -> None:
    del fresh_server.env["HUBBUB_JWT_SECRET"]
    fresh_server.start()
    minted = subprocess.run(
        [sys.executable, "-m", "hubbub", "token", "devuser", "--name", "Dev"],
        env=fresh_server.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    r = httpx.get(
        fresh_server.url + "/api/v1/conversations", headers={"Authorization": f"Bearer {minted}"}
    )
    assert r.status_code == 200
    secret = (fresh_server.data_dir / "dev-jwt-secret").read_text().strip()
    assert secret and secret != SECRET
    forged = httpx.get(fresh_server.url + "/api/v1/conversations", headers=auth("devuser"))
    assert forged.status_code == 401


async def test_events_held_for_a_silent_new_connection_are_bounded(
    fresh_server: ServerProcess,
) -> None:
    fresh_server.env.update(HUBBUB_OUTBOUND_BUFFER_BYTES=str(64 * 1024), HUBBUB_RESUME_WINDOW="60")
    fresh_server.start()
    cid = create_group(fresh_server, "loud", ["mute"])
    mute = await RawClient.connect(fresh_server.port, "mute")  # never sends a command
    loud = await Client.connect(fresh_server, "loud")
    for i in range(20):
        await loud.send_message(cid, "h" * 3900, client_msg_id=f"h{i}")
    assert await mute.close_code() == 4409
