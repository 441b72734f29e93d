"""The HTTP fallback transport: the same session as /ws, over SSE and POST."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from hubbub.config import Limits
from hubbub.gateway import stream
from hubbub.gateway.session import Session
from tests.conftest import InProcess, serve_in_process
from tests.support import (
    Client,
    ServerProcess,
    SseClient,
    StreamClosed,
    auth,
    create_group,
    new_id,
    open_direct,
    token,
)


async def test_a_stream_client_and_a_websocket_client_chat(server: ServerProcess) -> None:
    cid = open_direct(server, "fa", "fb")
    a = await SseClient.connect(server.url, "fa")
    b = await Client.connect(server, "fb")
    assert a.hello["user_id"] == "fa" and a.hello["protocol_version"] == 1
    assert await a.request({"type": "ping", "id": "p1"}) == {"type": "ack", "id": "p1"}
    await b.request({"type": "ping"})

    sent = await a.send_message(cid, "over the stream")
    got = await b.recv_type("message.new")
    assert got["message"]["id"] == sent["id"] and got["seq"] == sent["seq"]
    assert (await a.recv_type("message.new"))["message"]["id"] == sent["id"]  # its own, too

    reply = await b.send_message(cid, "over the socket")
    got = await a.recv_type("message.new")
    assert got["message"]["id"] == reply["id"] and got["message"]["body"] == "over the socket"

    # Receipts, typing and errors with the request's id, as on /ws.
    ack = await a.request({"type": "read", "conversation_id": cid, "seq": reply["seq"]})
    assert ack["type"] == "ack" and ack["moved"] is True
    receipt = await b.recv_type("receipt")
    assert receipt["user_id"] == "fa" and receipt["seq"] == reply["seq"]
    await a.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert (await b.recv_type("typing"))["user_id"] == "fa"
    refused = await a.request({"type": "message.edit", "message_id": "m_nope", "body": "x"})
    assert refused["type"] == "error" and refused["code"] == "not_found"
    assert (await a.request({"type": "no.such"}))["code"] == "unknown_type"


async def test_several_frames_in_one_post_are_handled_in_order(server: ServerProcess) -> None:
    cid = open_direct(server, "fc", "fd")
    a = await SseClient.connect(server.url, "fc")
    lines = [
        f'{{"type":"message.send","id":{i},"conversation_id":"{cid}",'
        f'"body":"n{i}","client_msg_id":"{new_id()}"}}'
        for i in range(1, 6)
    ]
    response = await a.post(("\n".join(lines) + "\n\n").encode())
    assert response.status_code == 202 and response.json() == {"accepted": 5}
    acks = [await a.recv_type("ack") for _ in range(5)]
    assert [ack["id"] for ack in acks] == [1, 2, 3, 4, 5]
    assert [ack["message"]["body"] for ack in acks] == [f"n{i}" for i in range(1, 6)]
    assert [ack["message"]["seq"] for ack in acks] == sorted(ack["message"]["seq"] for ack in acks)


async def test_a_stream_client_resumes_after_reconnecting(server: ServerProcess) -> None:
    cid = open_direct(server, "fe", "ff")
    a = await SseClient.connect(server.url, "fe")
    b = await Client.connect(server, "ff")
    await b.request({"type": "ping"})
    first = await b.send_message(cid, "before")
    assert (await a.recv_type("message.new"))["seq"] == first["seq"]
    await a.close()

    missed = [await b.send_message(cid, f"missed {i}") for i in range(3)]
    a = await SseClient.connect(server.url, "fe")
    ack = await a.request({"type": "resume", "cursors": {cid: first["seq"]}})
    assert ack["conversations"][cid]["status"] == "ok"
    assert ack["conversations"][cid]["replayed"] == 3
    replayed = [await a.recv_type("message.new") for _ in range(3)]
    assert [f["message"]["id"] for f in replayed] == [m["id"] for m in missed]
    live = await b.send_message(cid, "live again")
    assert (await a.recv_type("message.new"))["message"]["id"] == live["id"]
    await a.no_frame(0.2, "message.new")  # each once


def test_the_stream_is_authenticated_like_the_websocket(server: ServerProcess) -> None:
    no_token = httpx.get(server.url + "/sse")
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "unauthorized"
    bad = httpx.get(server.url + "/sse", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    expired = token("fg", ttl=-10)
    assert httpx.get(server.url + "/sse", params={"token": expired}).status_code == 401


async def test_a_token_in_the_query_opens_a_stream(server: ServerProcess) -> None:
    async with (
        httpx.AsyncClient() as http,
        http.stream("GET", server.url + "/sse", params={"token": token("fh")}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("no-cache")
        async for line in response.aiter_lines():
            assert line.startswith('data: {"type":"hello","user_id":"fh"')
            break


async def test_posts_reach_only_their_own_live_session(server: ServerProcess) -> None:
    a = await SseClient.connect(server.url, "fi")
    ping = b'{"type":"ping","id":1}'
    other_user = await a.post(ping, tok=token("fj"))
    assert other_user.status_code == 404 and other_user.json()["error"]["code"] == "not_found"
    assert (await a.post(ping, tok="garbage")).status_code == 401
    unknown = await a.http.post(
        server.url + "/sse/" + a.hello["connection_id"][:-4] + "beef",
        content=ping,
        headers=auth("fi"),
    )
    assert unknown.status_code == 404
    too_big = await a.post(b" " * ((1 << 20) + 1))
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "too_large"
    too_many = await a.post(b'{"type":"ping"}\n' * 257)  # past pending_commands (256)
    assert too_many.status_code == 413 and "257" not in too_many.text
    assert (await a.post(b'{"type":"ping"}\n' * 256)).status_code == 202
    assert [(await a.recv_type("ack"))["type"] for _ in range(256)] == ["ack"] * 256
    assert (await a.request({"type": "ping"}))["type"] == "ack"  # the session lives on
    await a.close()
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient() as http:
        gone = await http.post(
            server.url + "/sse/" + a.hello["connection_id"], content=ping, headers=auth("fi")
        )
    assert gone.status_code == 404


async def test_a_stream_counts_for_presence(server: ServerProcess) -> None:
    cid = create_group(server, "fk", ["fl"])
    watcher = await Client.connect(server, "fk")
    await watcher.request({"type": "ping"})
    del cid
    streamed = await SseClient.connect(server.url, "fl")
    online = await watcher.recv_type("presence")
    assert online["user_id"] == "fl" and online["status"] == "online"
    r = httpx.get(server.url + "/api/v1/presence", params={"user": "fl"}, headers=auth("fk"))
    assert r.json()["presence"][0]["status"] == "online"
    await streamed.close()
    offline = await watcher.recv_type("presence", timeout=10)  # after the grace period
    assert offline["user_id"] == "fl" and offline["status"] == "offline"


async def test_token_expiry_ends_the_stream_with_4401(in_process: InProcess) -> None:
    brief = token("fm", ttl=60, now=in_process.clock.now())
    a = await SseClient.connect(in_process.url, "fm", tok=brief)
    in_process.clock.advance(59)
    in_process.app.gateway.sweep()
    assert (await a.request({"type": "ping"}))["type"] == "ack"
    in_process.clock.advance(2)
    in_process.app.gateway.sweep()
    end = await a.closed()
    assert end.code == 4401 and end.reason == "token expired"
    assert len(in_process.app.gateway.hub) == 0


async def test_a_busy_stream_that_keeps_reading_is_not_timed_out(in_process: InProcess) -> None:
    a = await SseClient.connect(in_process.url, "fw")
    entry = next(iter(in_process.app.gateway.streams.values()))
    session = entry.session
    assert session is not None
    in_process.clock.advance(31)
    session.send(b'{"type":"ack","id":"queued"}')  # something waits when the ping comes
    in_process.app.gateway.sweep()
    assert await a.recv() == {"type": "ack", "id": "queued"}  # and is taken
    await asyncio.sleep(0.05)
    assert session.ping_sent_at is None
    in_process.clock.advance(11)
    in_process.app.gateway.sweep()
    assert (await a.request({"type": "ping"}))["type"] == "ack"  # not closed


def ping_sent_at(session: Session) -> float | None:
    """The session's ``ping_sent_at`` now.

    Read through a call, so that mypy keeps no narrowing of an earlier assert
    across the sweeps that change it (else it takes what follows as unreachable).
    """
    return session.ping_sent_at


async def test_a_stream_that_takes_nothing_times_out(in_process: InProcess) -> None:
    a = await SseClient.connect(in_process.url, "fn")
    session = next(iter(in_process.app.gateway.streams.values())).session
    assert session is not None
    in_process.clock.advance(31)
    in_process.app.gateway.sweep()  # idle: a ping, answered at once (nothing waits)
    assert ping_sent_at(session) is None
    # A client that stops reading: what is written waits, and the next ping
    # is not answered.
    session.writer.sending = True  # type: ignore[attr-defined]
    in_process.clock.advance(31)
    in_process.app.gateway.sweep()
    assert ping_sent_at(session) is not None
    in_process.clock.advance(11)
    in_process.app.gateway.sweep()
    session.writer.sending = False  # type: ignore[attr-defined]
    end = await a.closed()
    assert end.code == 4408


async def test_keepalive_comments_flow_in_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "KEEPALIVE", 0.05)
    async with serve_in_process(tmp_path) as served:
        a = await SseClient.connect(served.url, "fo")
        await a.no_frame(0.4)
        assert a.keepalives >= 3
        await a.close()


async def test_a_stream_too_slow_for_its_events_is_ended_as_too_slow(tmp_path: Path) -> None:
    limits = Limits(outbound_buffer_bytes=100_000)
    async with serve_in_process(tmp_path, limits=limits) as served:
        gateway = served.app.gateway
        async with httpx.AsyncClient(base_url=served.url) as http:
            r = await http.post(
                "/api/v1/conversations",
                headers=auth("fs"),
                json={"kind": "direct", "members": ["ft"]},
            )
            cid = r.json()["conversation"]["id"]
        # A client that reads its stream's head, then nothing more.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", served.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET /sse?token={token('ft')} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        (connection_id,) = gateway.streams
        async with httpx.AsyncClient(base_url=served.url) as http:
            # A first command: live events flow at once (none is held).
            posted = await http.post(
                f"/sse/{connection_id}", content=b'{"type":"ping"}', headers=auth("ft")
            )
            assert posted.status_code == 202
            sender = await Client.connect_url(served.ws_url, "fs")
            body = "x" * 4000
            for _ in range(3000):  # bounded: the kernel's buffers, then the limit
                if not gateway.streams:
                    break
                await sender.send_message(cid, body)
            # Gone at once, though its response cannot even write the close event.
            assert not gateway.streams and len(gateway.hub) == 1  # the sender alone
            late = await http.post(
                f"/sse/{connection_id}", content=b'{"type":"ping"}', headers=auth("ft")
            )
            assert late.status_code == 404
        writer.close()


async def test_shutdown_ends_streams_with_1012(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    a = await SseClient.connect(fresh_server.url, "fq")
    await a.request({"type": "ping"})
    await asyncio.get_running_loop().run_in_executor(None, fresh_server.stop)
    end = await a.closed()
    assert end.code == 1012


async def test_stream_closed_is_raised_once_the_stream_breaks(fresh_server: ServerProcess) -> None:
    fresh_server.start()
    a = await SseClient.connect(fresh_server.url, "fr")
    await asyncio.get_running_loop().run_in_executor(None, fresh_server.kill)
    with pytest.raises(StreamClosed) as end:
        await a.recv(5)
    assert end.value.code is None  # no close event: a dropped connection


async def test_typing_stops_when_its_stream_ends(server: ServerProcess) -> None:
    cid = open_direct(server, "fu", "fv")
    typist = await SseClient.connect(server.url, "fu")
    watcher = await Client.connect(server, "fv")
    await watcher.request({"type": "ping"})
    await typist.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert (await watcher.recv_type("typing"))["state"] == "start"
    await typist.close()
    stopped = await watcher.recv_type("typing")
    assert stopped["user_id"] == "fu" and stopped["state"] == "stop"
