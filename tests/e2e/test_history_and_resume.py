"""History pagination, resume after disconnect, and durability across SIGKILL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support import Client, ServerProcess, auth, create_group, new_id, open_direct


def post(server: ServerProcess, user: str, cid: str, body: str) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/messages",
        headers=auth(user),
        json={"body": body, "client_msg_id": new_id()},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["message"])


def page(server: ServerProcess, user: str, cid: str, **params: int) -> dict[str, Any]:
    r = httpx.get(
        f"{server.url}/api/v1/conversations/{cid}/messages", headers=auth(user), params=params
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_history_pages_backwards_and_forwards(server: ServerProcess) -> None:
    cid = open_direct(server, "pa", "pb")
    for i in range(1, 26):
        post(server, "pa" if i % 2 else "pb", cid, f"n{i}")

    latest = page(server, "pb", cid, limit=10)
    assert [m["seq"] for m in latest["messages"]] == list(range(16, 26))
    assert latest["has_more"] is True
    older = page(server, "pb", cid, before=16, limit=10)
    assert [m["seq"] for m in older["messages"]] == list(range(6, 16))
    oldest = page(server, "pb", cid, before=6, limit=10)
    assert [m["seq"] for m in oldest["messages"]] == list(range(1, 6))
    assert oldest["has_more"] is False

    forward = page(server, "pa", cid, after=0, limit=10)
    assert [m["seq"] for m in forward["messages"]] == list(range(1, 11))
    assert forward["has_more"] is True
    rest = page(server, "pa", cid, after=20, limit=10)
    assert [m["seq"] for m in rest["messages"]] == list(range(21, 26))
    assert rest["has_more"] is False
    window = page(server, "pa", cid, after=3, before=7)
    assert [m["body"] for m in window["messages"]] == ["n4", "n5", "n6"]
    default = page(server, "pa", cid)
    assert len(default["messages"]) == 25 and default["has_more"] is False


def test_history_rejects_bad_parameters(server: ServerProcess) -> None:
    cid = open_direct(server, "pa", "pc")
    url = f"{server.url}/api/v1/conversations/{cid}/messages"
    for params in ({"limit": 0}, {"limit": 101}, {"before": "x"}, {"after": -1}):
        r = httpx.get(url, headers=auth("pa"), params=params)
        assert r.status_code == 422, params
        assert r.json()["error"]["code"] == "invalid"
    missing = httpx.get(f"{server.url}/api/v1/conversations/c_nope/messages", headers=auth("pa"))
    assert missing.status_code == 404


def test_conversation_list_orders_by_activity_with_unread(server: ServerProcess) -> None:
    first = open_direct(server, "la", "lb")
    second = create_group(server, "lc", ["la"], title="second")
    post(server, "lb", first, "one")
    post(server, "lb", first, "two")
    post(server, "lc", second, "three")
    post(server, "la", second, "mine")
    listed = httpx.get(f"{server.url}/api/v1/conversations", headers=auth("la")).json()
    convs = {c["id"]: c for c in listed["conversations"]}
    assert [c["id"] for c in listed["conversations"]] == [second, first]
    assert convs[first]["unread_count"] == 2 and convs[first]["last_message"]["body"] == "two"
    # Sending advances your own read pointer: everything before it is read.
    assert convs[second]["unread_count"] == 0 and convs[second]["last_seq"] == 2
    assert convs[second]["title"] == "second" and convs[second]["kind"] == "group"


async def test_resume_returns_exactly_the_missed_messages(server: ServerProcess) -> None:
    cid = create_group(server, "ra", ["rb"])
    other = create_group(server, "ra", ["rb"], title="other")
    ra = await Client.connect(server, "ra")
    rb = await Client.connect(server, "rb")
    await rb.request({"type": "ping"})
    seen = [await ra.send_message(cid, f"before {i}") for i in range(3)]
    for m in seen:
        assert (await rb.recv_type("message.new"))["message"]["id"] == m["id"]
    cursor = seen[-1]["seq"]
    await rb.close()

    missed = [await ra.send_message(cid, f"missed {i}") for i in range(4)]
    missed_other = [await ra.send_message(other, "elsewhere")]

    rb = await Client.connect(server, "rb")
    rid = await rb.send({"type": "resume", "cursors": {cid: cursor, other: 0}})
    replayed = []
    while True:
        frame = await rb.recv()
        if frame["type"] == "ack":
            assert frame["id"] == rid
            break
        assert frame["type"] == "message.new"
        replayed.append(frame["message"])
    assert [m["id"] for m in replayed if m["conversation_id"] == cid] == [m["id"] for m in missed]
    assert [m["id"] for m in replayed if m["conversation_id"] == other] == [
        m["id"] for m in missed_other
    ]
    assert frame["conversations"][cid] == {
        "status": "ok",
        "last_seq": 7,
        "replayed": 4,
        "typing": [],
    }
    # Live delivery continues after the replay, without repeats.
    live = await ra.send_message(cid, "live")
    assert (await rb.recv_type("message.new"))["message"]["id"] == live["id"]
    await rb.no_frame(0.3, "message.new")
    await ra.close()
    await rb.close()


async def test_messages_sent_during_resume_arrive_once_in_order(server: ServerProcess) -> None:
    cid = create_group(server, "sa", ["sb"])
    sa = await Client.connect(server, "sa")
    for i in range(50):
        await sa.send_message(cid, f"old {i}")
    sb = await Client.connect(server, "sb")

    async def keep_sending() -> None:
        for i in range(50):
            await sa.send_message(cid, f"new {i}")

    sender = asyncio.create_task(keep_sending())
    await asyncio.sleep(0.01)
    await sb.send({"type": "resume", "cursors": {cid: 10}})
    await sender
    seqs: list[int] = []
    while len(seqs) < 90:
        seqs.append((await sb.recv_type("message.new"))["message"]["seq"])
    assert seqs == list(range(11, 101))
    await sb.no_frame(0.3, "message.new")
    await sa.close()
    await sb.close()


async def test_resume_too_far_behind_is_explicit(fresh_server: ServerProcess) -> None:
    fresh_server.env["HUBBUB_RESUME_LIMIT"] = "5"
    fresh_server.start()
    cid = open_direct(fresh_server, "ta", "tb")
    for i in range(8):
        post(fresh_server, "ta", cid, f"m{i}")
    tb = await Client.connect(fresh_server, "tb")
    assert tb.hello["limits"]["resume_limit"] == 5
    ack = await tb.request({"type": "resume", "cursors": {cid: 0}})
    assert ack["conversations"][cid] == {
        "status": "too_far_behind",
        "last_seq": 8,
        "replayed": 0,
        "typing": [],
    }
    ack = await tb.request({"type": "resume", "cursors": {cid: 3}})
    assert ack["conversations"][cid] == {"status": "ok", "last_seq": 8, "replayed": 5, "typing": []}
    await tb.close()


async def test_sigkill_right_after_ack_keeps_every_acked_message(
    fresh_server: ServerProcess,
) -> None:
    fresh_server.start()
    cid = create_group(fresh_server, "ka", ["kb"])
    ka = await Client.connect(fresh_server, "ka")
    for i in range(300):
        await ka.send(
            {
                "type": "message.send",
                "conversation_id": cid,
                "body": f"durable {i}",
                "client_msg_id": f"d{i}",
            }
        )
    acked: list[dict[str, Any]] = []
    while len(acked) < 50:
        frame = await ka.recv()
        if frame["type"] == "ack":
            acked.append(frame["message"])
    fresh_server.kill()  # while later sends are still in flight
    fresh_server.start()

    stored = []
    after = 0
    while True:
        chunk = page(fresh_server, "kb", cid, after=after, limit=100)
        stored += chunk["messages"]
        if not chunk["has_more"]:
            break
        after = stored[-1]["seq"]
    assert stored[: len(acked)] == acked
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
    assert [m["body"] for m in stored] == [f"durable {i}" for i in range(len(stored))]
    # A retry after the restart is recognised, not stored twice.
    last = acked[-1]
    r = httpx.post(
        f"{fresh_server.url}/api/v1/conversations/{cid}/messages",
        headers=auth("ka"),
        json={"body": last["body"], "client_msg_id": last["client_msg_id"]},
    )
    assert r.status_code == 200 and r.json()["message"] == last
