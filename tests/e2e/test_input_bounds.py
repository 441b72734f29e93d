"""Bad input over real sockets: a clear error, the connection survives, nothing stored is lost.

Integers beyond 2^53 - 1, NUL characters, JSON nested too deeply, text that is
not UTF-8 and request heads over 16 KiB; on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.services import fresh_postgres_sync
from tests.support import (
    Client,
    RawClient,
    ServerProcess,
    SseClient,
    auth,
    create_group,
    masked_frame,
    new_id,
    token,
)

MAX_INT = 2**53 - 1
HEAD_LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with fresh_postgres_sync() as url:
        proc = ServerProcess(tmp_path_factory.mktemp("pg"), HUBBUB_DATABASE_URL=url).start()
        yield proc
        proc.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def any_server(request: pytest.FixtureRequest) -> ServerProcess:
    name = "server" if request.param == "sqlite" else "pg_server"
    served: ServerProcess = request.getfixturevalue(name)
    return served


def history(server: ServerProcess, user: str, cid: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}/api/v1/conversations/{cid}/messages", headers=auth(user))
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


async def refused(client: Client, frame: dict[str, Any]) -> dict[str, Any]:
    reply = await client.request(frame)
    assert reply["type"] == "error", (frame, reply)
    return reply


async def still_serves(client: Client, server: ServerProcess, cid: str, seq: int) -> None:
    """The connection answers, a send stores the next seq: nothing was stored meanwhile."""
    assert (await client.request({"type": "ping"}))["type"] == "ack"
    sent = await client.send_message(cid, "still here")
    assert sent["seq"] == seq


async def test_out_of_range_integers_in_frames_are_invalid(any_server: ServerProcess) -> None:
    user = "int-" + new_id()[:8]
    cid = create_group(any_server, user, ["int-other"])
    c = await Client.connect(any_server, user)
    first = await c.send_message(cid, "kept")
    frames: list[dict[str, Any]] = [
        {"type": "resume", "cursors": {cid: 2**63}},
        {"type": "resume", "cursors": {cid: MAX_INT + 1}},
        {"type": "resume", "cursors": {cid: 10**20}},
        {"type": "read", "conversation_id": cid, "seq": 2**63},
        {"type": "delivered", "conversation_id": cid, "seq": 2**64},
        {"type": "read", "conversation_id": cid, "seq": -1},
    ]
    for frame in frames:
        assert (await refused(c, frame))["code"] == "invalid"
    # An id the reply could not carry exactly is refused without one.
    await c.ws.send(json.dumps({"type": "ping", "id": 2**63}))
    reply = await c.recv_type("error")
    assert (reply["type"], reply["id"], reply["code"]) == ("error", None, "invalid")
    # In range, all is well: the largest cursor is simply ahead of the stream.
    ack = await c.request({"type": "resume", "cursors": {cid: MAX_INT}})
    assert ack["type"] == "ack" and ack["conversations"][cid]["status"] == "ok"
    read = await c.request({"type": "read", "conversation_id": cid, "seq": MAX_INT})
    assert read["type"] == "ack", read
    await still_serves(c, any_server, cid, first["seq"] + 1)
    assert [m["body"] for m in history(any_server, user, cid)] == ["kept", "still here"]


async def test_nul_in_frames_is_invalid_on_both_databases(any_server: ServerProcess) -> None:
    user = "nul-" + new_id()[:8]
    cid = create_group(any_server, user, ["nul-other"])
    c = await Client.connect(any_server, user)
    first = await c.send_message(cid, "original")
    mid = first["id"]
    send = {"type": "message.send", "conversation_id": cid, "body": "b", "client_msg_id": new_id()}
    for frame in [
        {**send, "body": "a\x00b"},
        {**send, "client_msg_id": "k\x00"},
        {**send, "conversation_id": cid + "\x00"},
        {**send, "reply_to": mid + "\x00"},
        {**send, "kind": "file", "body": "", "attachments": ["u_\x00"]},
        {"type": "message.edit", "message_id": mid, "body": "edited\x00"},
        {"type": "message.edit", "message_id": mid + "\x00", "body": "edited"},
        {"type": "message.delete", "message_id": mid + "\x00"},
        {"type": "reaction.add", "message_id": mid, "emoji": "\x00"},
        {"type": "typing", "conversation_id": cid + "\x00", "state": "start"},
        {"type": "read", "conversation_id": cid + "\x00", "seq": 1},
        {"type": "resume", "cursors": {cid + "\x00": 0}},
    ]:
        reply = await refused(c, frame)
        assert reply["code"] == "invalid" and "NUL" in reply["message"], (frame, reply)
    # Text that merely shows the escape is no NUL.
    shown = await c.send_message(cid, "the escape \\u0000 is six characters")
    assert shown["body"] == "the escape \\u0000 is six characters"
    await still_serves(c, any_server, cid, first["seq"] + 2)
    bodies = [m["body"] for m in history(any_server, user, cid)]
    assert bodies == ["original", "the escape \\u0000 is six characters", "still here"]


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


async def test_deep_nesting_is_invalid_and_the_connection_stays(server: ServerProcess) -> None:
    cid = create_group(server, "deep-a", ["deep-b"])
    c = await Client.connect(server, "deep-a")
    first = await c.send_message(cid, "before")
    limit = c.hello["limits"]["max_frame_bytes"]
    send = (
        '{"type":"message.send","id":%d,"conversation_id":"' + cid + '","client_msg_id":"'
        + new_id() + '","body":%s}'
    )  # fmt: skip
    cases: list[tuple[str, int | None]] = [
        (nested(1000), None),
        ("{" * 1000 + "}" * 1000, None),
        (nested((limit - 100) // 2), None),
        # Too deep to read at all: the id cannot be read either.
        ('{"type":"ping","id":1,"x":' + nested(1000) + "}", None),
        ('{"type":"ping","id":2,"ignored":' + nested((limit - 100) // 2) + "}", None),
        (send % (3, nested(1000)), None),
        ('{"type":"resume","id":4,"cursors":' + '{"a":' * 1000 + "0" + "}" * 1000 + "}", None),
        # Read, but deeper than any frame is: refused with the id.
        (send % (5, nested(40)), 5),
        ('{"type":"ping","id":6,"ignored":' + nested(100) + "}", 6),
    ]
    for raw, rid in cases:
        assert len(raw) <= limit
        await c.ws.send(raw)
        reply = await c.recv_type("error")
        assert (reply["type"], reply["id"], reply["code"]) == ("error", rid, "invalid"), raw[:60]
    await still_serves(c, server, cid, first["seq"] + 1)

    # The HTTP fallback hands its frames to the same parser.
    s = await SseClient.connect(server.url, "deep-a")
    r = await s.post(
        nested(1000).encode() + b'\n{"type":"ping","id":"deep","x":' + nested(100).encode() + b"}"
    )
    assert r.status_code == 202, r.text
    for expected in (None, "deep"):
        reply = await s.recv_type("error")
        assert (reply["type"], reply["id"], reply["code"]) == ("error", expected, "invalid")
    assert (await s.request({"type": "ping"}))["type"] == "ack"


def fragment(opcode: int, payload: bytes, fin: bool) -> bytes:
    """One masked client frame of under 126 bytes, final or not."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)])
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize(
    "frames",
    [
        [masked_frame(0x1, b'{"type":"ping","id":1,"x":"\xff"}')],
        [masked_frame(0x1, b'{"type":"ping","id":1,"x":"\xed\xa0\x80"}')],  # a surrogate
        [masked_frame(0x1, b"\xc0\xaf")],  # overlong
        [fragment(0x1, b'{"type":"ping","id":1,"x":"\xe2', False), fragment(0x0, b'"}', True)],
    ],
    ids=["invalid byte", "surrogate", "overlong", "fragmented"],
)
async def test_text_that_is_not_utf8_fails_the_connection_with_1007(
    server: ServerProcess, frames: list[bytes]
) -> None:
    raw = await RawClient.connect(server.port, "utf8-" + new_id()[:6])
    opcode, hello = await raw.frame()
    assert opcode == 0x1 and json.loads(hello)["type"] == "hello"
    # A valid request after the bad one is not handled: the connection has failed.
    raw.writer.write(b"".join(frames) + masked_frame(0x1, b'{"type":"ping","id":2}'))
    await raw.writer.drain()
    while True:
        opcode, payload = await raw.frame()
        assert opcode != 0x1 or json.loads(payload)["type"] != "ack", payload
        if opcode == 0x8:
            break
    assert int.from_bytes(payload[:2], "big") == 1007
    assert await asyncio.wait_for(raw.reader.read(), 5) == b""  # the server closed its side
    # Valid UTF-8 (beyond ASCII) is text as ever.
    c = await Client.connect(server, "utf8-ok")
    await c.ws.send(json.dumps({"type": "ping", "id": "ü€😀"}, ensure_ascii=False))
    assert (await c.recv_type("ack"))["id"] == "ü€😀"


async def test_fallback_post_that_is_not_utf8_is_422(server: ServerProcess) -> None:
    s = await SseClient.connect(server.url, "utf8-post")
    r = await s.post(b'{"type":"ping","id":1,"x":"\xff"}')
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid", r.text
    assert (await s.request({"type": "ping"}))["type"] == "ack"


async def raw_request(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Write a hand-made request; read the answer to its end: (head, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("size", [HEAD_LIMIT, 1 << 20], ids=["16 KiB", "1 MiB"])
async def test_request_head_over_16_kib_is_431(server: ServerProcess, size: int) -> None:
    big = b"X-Big: " + b"a" * size + b"\r\n"
    for request in [
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n",
        b"GET /api/v1/conversations?" + b"q" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ws?token=" + token("big").encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + big
        + b"\r\n",
    ]:
        head, body = await raw_request(server.port, request)
        assert head.startswith(b"HTTP/1.1 431 "), head[:80]
        assert json.loads(body)["error"]["code"] == "too_large"
    # Under the limit, with a body in the same write: served as ever.
    fits = b"X-Fits: " + b"a" * (HEAD_LIMIT - 400) + b"\r\n"
    body = b'{"kind":"group","title":"fits","members":["fits2"]}'
    head, answer = await raw_request(
        server.port,
        b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {token('fits')}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + fits
        + b"\r\n"
        + body,
    )
    assert head.startswith(b"HTTP/1.1 201 "), head[:80]
    assert json.loads(answer)["conversation"]["title"] == "fits"
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200
    c = await Client.connect(server, "after-big")
    assert (await c.request({"type": "ping"}))["type"] == "ack"


@pytest.mark.parametrize(
    "request_",
    [
        b"GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\nX-On-Behalf-Of: a\x00b\r\n\r\n",
        b"GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\nX-Api-Key: \x01\r\n\r\n",
        b"GET /api/\x00v1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["NUL in a header", "control character", "NUL in the path", "no request line"],
)
async def test_a_request_that_cannot_be_parsed_is_a_json_400(
    server: ServerProcess, request_: bytes
) -> None:
    head, body = await raw_request(server.port, request_)
    assert head.startswith(b"HTTP/1.1 400 "), head[:80]
    assert json.loads(body)["error"]["code"] == "invalid"
    assert httpx.get(server.url + "/health").status_code == 200
