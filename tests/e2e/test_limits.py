"""Limits per user and per address, on a real server over real sockets."""

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

from hubbub.limits.settings import Quotas
from tests.conftest import serve_in_process
from tests.support import Client, ServerProcess, SseClient, create_group, new_id, token

API_KEY = "limits-key"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A send a second (three at once) per user; three connections per user."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("limited"),
        HUBBUB_SEND_RATE="1",
        HUBBUB_SEND_BURST="3",
        HUBBUB_MAX_CONNECTIONS_PER_USER="3",
        HUBBUB_API_KEY=API_KEY,
    ).start()
    yield proc
    proc.stop()


def send_frame(cid: str) -> dict[str, Any]:
    return {"type": "message.send", "conversation_id": cid, "body": "hi", "client_msg_id": new_id()}


def post(server: ServerProcess, cid: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/messages",
        headers=headers,
        json={"body": "hi", "client_msg_id": new_id()},
    )


async def refused_handshake(url: str, **headers: str) -> Any:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, additional_headers=headers or None)
    return refused.value.response


async def test_sends_beyond_the_burst_are_refused_with_when_to_retry(
    limited: ServerProcess,
) -> None:
    cid = create_group(limited, "ra", ["rb"])
    client = await Client.connect(limited, "ra")
    ids = [await client.send(send_frame(cid)) for _ in range(5)]  # pipelined: one batch or two
    replies: dict[int, dict[str, Any]] = {}
    while len(replies) < 5:
        frame = await client.recv()
        if frame["type"] in ("ack", "error"):
            replies[frame["id"]] = frame
    kinds = [replies[i]["type"] for i in ids]
    assert kinds == ["ack"] * 3 + ["error"] * 2  # the first ones go through, in order
    refused = replies[ids[3]]
    assert refused["code"] == "rate_limited"
    assert 0 < refused["retry_after_ms"] <= 1000  # a token a second
    await asyncio.sleep(refused["retry_after_ms"] / 1000)
    again = await client.request(send_frame(cid))
    assert again["type"] == "ack", again  # the advertised wait lets the next one through


async def test_rest_and_websocket_share_the_bucket(limited: ServerProcess) -> None:
    cid = create_group(limited, "rc", ["rd"])
    client = await Client.connect(limited, "rc")
    for _ in range(3):
        assert (await client.request(send_frame(cid)))["type"] == "ack"
    refused = post(limited, cid, {"Authorization": "Bearer " + token("rc")})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["retry-after"] == "1"  # seconds, rounded up
    time.sleep(int(refused.headers["retry-after"]))
    assert post(limited, cid, {"Authorization": "Bearer " + token("rc")}).status_code == 201
    other = await Client.connect(limited, "rd")  # another user has a bucket of its own
    assert (await other.request(send_frame(cid)))["type"] == "ack"


async def test_the_http_fallback_is_limited_like_the_websocket(limited: ServerProcess) -> None:
    cid = create_group(limited, "re", ["rf"])
    client = await SseClient.connect(limited.url, "re")
    body = "\n".join(json.dumps({**send_frame(cid), "id": n}) for n in range(4))
    assert (await client.post(body.encode())).status_code == 202
    replies = [await client.recv_type("ack"), await client.recv_type("ack")]
    replies += [await client.recv_type("ack")]
    refused = await client.recv_type("error")
    assert [r["id"] for r in replies] == [0, 1, 2]
    assert refused["id"] == 3 and refused["code"] == "rate_limited"
    assert refused["retry_after_ms"] > 0


def test_the_api_key_is_not_limited(limited: ServerProcess) -> None:
    cid = create_group(limited, "rg", ["rh"])
    for _ in range(8):
        assert post(limited, cid, {"X-Api-Key": API_KEY}).status_code == 201
    for _ in range(8):  # on behalf of a user: the key's budget, not the user's
        headers = {"X-Api-Key": API_KEY, "X-On-Behalf-Of": "rg"}
        assert post(limited, cid, headers).status_code == 201
    user = {"Authorization": "Bearer " + token("rg")}
    assert [post(limited, cid, user).status_code for _ in range(4)] == [201, 201, 201, 429]


async def test_the_connection_after_the_most_is_refused_until_one_closes(
    limited: ServerProcess,
) -> None:
    first = await Client.connect(limited, "rk")
    await SseClient.connect(limited.url, "rk")  # a stream counts like a WebSocket
    await Client.connect(limited, "rk")
    response = await refused_handshake(f"{limited.ws_url}?token={token('rk')}")
    assert response.status_code == 429
    assert json.loads(response.body)["error"]["code"] == "too_many_connections"
    stream = httpx.get(limited.url + "/sse", headers={"Authorization": "Bearer " + token("rk")})
    assert stream.status_code == 429
    assert stream.json()["error"]["code"] == "too_many_connections"
    await Client.connect(limited, "rl")  # another user's connections are its own
    await first.close()
    deadline = time.monotonic() + 5
    while True:  # the server frees the slot once it has seen the close
        try:
            await Client.connect(limited, "rk")
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    await refused_handshake(f"{limited.ws_url}?token={token('rk')}")


async def test_new_connections_per_address_are_limited(tmp_path: Path) -> None:
    quotas = Quotas(
        send_rate=0,
        max_connections_per_user=0,
        connect_rate_per_ip=2,
        connect_burst_per_ip=3,
    )
    async with serve_in_process(tmp_path, quotas=quotas) as ip:
        url = f"{ip.ws_url}?token={token('ip')}"
        for _ in range(3):
            await Client.connect_url(ip.ws_url, "ip")
        # Without a trusted header configured, the socket's address counts: a
        # forwarded one the client sends changes nothing.
        response = await refused_handshake(url, **{"X-Forwarded-For": "10.0.0.9"})
        assert response.status_code == 429
        assert json.loads(response.body)["error"]["code"] == "rate_limited"
        assert response.headers["Retry-After"] == "1"
        async with httpx.AsyncClient() as http:
            stream = await http.get(ip.url + "/sse", headers={"Authorization": "Bearer x"})
        assert stream.status_code == 429  # streams too, before the token is looked at
        assert stream.headers["retry-after"] == "1"
        ip.clock.advance(0.5)  # one token at 2 a second
        await Client.connect_url(ip.ws_url, "ip")
        await refused_handshake(url)


async def test_behind_a_proxy_the_right_most_forwarded_address_counts(tmp_path: Path) -> None:
    quotas = Quotas(
        send_rate=0,
        max_connections_per_user=0,
        connect_rate_per_ip=1,
        connect_burst_per_ip=2,
        client_ip_header="X-Forwarded-For",
    )
    async with serve_in_process(tmp_path, quotas=quotas) as ip:
        url = f"{ip.ws_url}?token={token('px')}"

        async def connect(forwarded: str) -> None:
            ws = await websockets.connect(url, additional_headers={"X-Forwarded-For": forwarded})
            await ws.close()

        await connect("10.0.0.1")
        await connect("203.0.113.7, 10.0.0.1")  # what the client claimed, then the proxy
        response = await refused_handshake(url, **{"X-Forwarded-For": "10.0.0.1"})
        assert response.status_code == 429
        # The client cannot pick its address: only the value the proxy appended counts.
        await refused_handshake(url, **{"X-Forwarded-For": "10.0.0.2, 10.0.0.1"})
        await connect("10.0.0.1, 10.0.0.2")  # another client, behind the same proxy
        await connect("10.0.0.2")
        await refused_handshake(url, **{"X-Forwarded-For": "10.0.0.2"})
        await connect("10.0.0.3")
