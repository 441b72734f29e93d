"""Live messaging over real sockets against a real hubbub process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.support import Client, ServerProcess, auth, create_group, new_id, open_direct


async def test_two_users_exchange_messages_live(server: ServerProcess) -> None:
    cid = open_direct(server, "ann", "ben")
    ann = await Client.connect(server, "ann")
    ben = await Client.connect(server, "ben")
    # Ann sends over the WebSocket; Ben sends over REST: one service, same delivery.
    sent = await ann.send_message(cid, "hello ben")
    got = await ben.recv_type("message.new")
    assert got["message"] == sent
    # The sender's own connections get the message too (other tabs, devices).
    assert (await ann.recv_type("message.new"))["message"] == sent
    assert sent["sender_id"] == "ann" and sent["body"] == "hello ben" and sent["seq"] >= 1

    r = httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/messages",
        headers=auth("ben"),
        json={"body": "hi ann", "client_msg_id": new_id()},
    )
    assert r.status_code == 201
    reply = (await ann.recv_type("message.new"))["message"]
    assert reply == r.json()["message"]
    assert reply["seq"] == sent["seq"] + 1
    await ann.close()
    await ben.close()


async def test_every_device_of_every_member_receives(server: ServerProcess) -> None:
    cid = create_group(server, "cat", ["dan", "eve"])
    devices = [await Client.connect(server, u) for u in ("cat", "cat", "dan", "dan", "eve")]
    sender = devices[0]
    sent = await sender.send_message(cid, "to everyone")
    for device in devices:
        frame = await device.recv_type("message.new")
        assert frame["message"]["id"] == sent["id"]
    for device in devices:
        await device.close()


async def test_outsider_is_refused_everywhere_and_sees_nothing(server: ServerProcess) -> None:
    cid = open_direct(server, "fay", "gus")
    fay = await Client.connect(server, "fay")
    mallory = await Client.connect(server, "mallory")
    await fay.send_message(cid, "private")

    reply = await mallory.request(
        {"type": "message.send", "conversation_id": cid, "body": "x", "client_msg_id": new_id()}
    )
    assert reply["type"] == "error" and reply["code"] == "forbidden"
    resume = await mallory.request({"type": "resume", "cursors": {cid: 0}})
    assert resume["conversations"][cid]["status"] == "unavailable"

    h = auth("mallory")
    base = f"{server.url}/api/v1/conversations/{cid}"
    assert httpx.get(base, headers=h).status_code == 403
    assert httpx.get(base + "/messages", headers=h).status_code == 403
    r = httpx.post(base + "/messages", headers=h, json={"body": "x", "client_msg_id": "1"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    listed = httpx.get(f"{server.url}/api/v1/conversations", headers=h).json()
    assert cid not in [c["id"] for c in listed["conversations"]]

    await fay.send_message(cid, "still private")
    await mallory.no_frame(0.3, "message.new")
    # The refused attempt stored nothing.
    history = httpx.get(base + "/messages", headers=auth("gus")).json()["messages"]
    assert [m["body"] for m in history] == ["private", "still private"]
    await fay.close()
    await mallory.close()


async def test_retry_with_same_client_msg_id_returns_original(server: ServerProcess) -> None:
    cid = open_direct(server, "hal", "ivy")
    hal = await Client.connect(server, "hal")
    ivy = await Client.connect(server, "ivy")
    first = await hal.send_message(cid, "once", client_msg_id="retry-1")
    assert (await ivy.recv_type("message.new"))["message"]["id"] == first["id"]

    again = await hal.request(
        {"type": "message.send", "conversation_id": cid, "body": "once", "client_msg_id": "retry-1"}
    )
    assert again["type"] == "ack" and again["duplicate"] is True
    assert again["message"] == first
    await ivy.no_frame(0.3, "message.new")  # nothing new is delivered

    url = f"{server.url}/api/v1/conversations/{cid}/messages"
    r = httpx.post(url, headers=auth("hal"), json={"body": "once", "client_msg_id": "retry-1"})
    assert r.status_code == 200 and r.json()["message"] == first
    await ivy.no_frame(0.3, "message.new")
    history = httpx.get(url, headers=auth("ivy")).json()["messages"]
    assert [m["id"] for m in history] == [first["id"]]

    # The same client_msg_id from another sender is another message.
    other = await ivy.send_message(cid, "mine", client_msg_id="retry-1")
    assert other["id"] != first["id"] and other["seq"] == first["seq"] + 1
    await hal.close()
    await ivy.close()


async def test_pipelined_sends_keep_their_order(server: ServerProcess) -> None:
    await pipelined_sends_keep_their_order(server)


async def test_pure_python_fan_out_keeps_the_order(tmp_path: Path) -> None:
    """Where the compiled fan-out is not built, the queued one delivers the same."""
    proc = ServerProcess(tmp_path / "server", HUBBUB_PURE_PYTHON="1").start()
    try:
        await pipelined_sends_keep_their_order(proc)
    finally:
        proc.stop()


async def pipelined_sends_keep_their_order(server: ServerProcess) -> None:
    cid = create_group(server, "jon", ["kim"])
    jon = await Client.connect(server, "jon")
    kim = await Client.connect(server, "kim")
    kim2 = await Client.connect(server, "kim")
    await kim.request({"type": "ping"})
    await kim2.request({"type": "ping"})
    ids = [
        await jon.send(
            {
                "type": "message.send",
                "conversation_id": cid,
                "body": f"m{i}",
                "client_msg_id": f"p{i}",
            }
        )
        for i in range(200)
    ]
    acks: dict[str, int] = {}
    while len(acks) < len(ids):
        frame = await jon.recv()
        if frame["type"] == "ack":
            acks[frame["id"]] = frame["message"]["seq"]
    assert [acks[i] for i in ids] == list(range(1, 201))
    for device in (kim, kim2):
        bodies = [(await device.recv_type("message.new"))["message"]["body"] for _ in range(200)]
        assert bodies == [f"m{i}" for i in range(200)]
    await jon.close()
    await kim.close()
    await kim2.close()


async def test_sends_from_many_connections_get_gap_free_seqs(server: ServerProcess) -> None:
    users = [f"w{i}" for i in range(6)]
    cid = create_group(server, users[0], users[1:])
    clients = [await Client.connect(server, u) for u in users]

    async def burst(c: Client, n: int) -> list[int]:
        return [(await c.send_message(cid, f"{n}-{i}"))["seq"] for i in range(20)]

    seqs = await asyncio.gather(*(burst(c, n) for n, c in enumerate(clients)))
    flat = sorted(s for per in seqs for s in per)
    assert flat == list(range(1, 121))
    for per in seqs:
        assert per == sorted(per)
    # Every member saw all 120, in seq order.
    for c in clients:
        got: list[int] = []
        while len(got) < 120:
            got.append((await c.recv_type("message.new"))["message"]["seq"])
        assert got == list(range(1, 121))
        await c.close()
