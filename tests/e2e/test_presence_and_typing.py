"""Typing and presence, on a hand-moved clock (no sleeping for expiry)."""

from __future__ import annotations

import asyncio
import json

import httpx

from hubbub.service.presence import ANNOUNCE_CONCURRENCY
from tests.conftest import InProcess
from tests.support import (
    Client,
    RawClient,
    ServerProcess,
    auth,
    create_group,
    masked_frame,
    new_id,
    open_direct,
    token,
)


async def direct(ip: InProcess, a: str, b: str) -> str:
    async with httpx.AsyncClient(base_url=ip.url) as http:
        r = await http.post(
            "/api/v1/conversations", headers=auth(a), json={"kind": "direct", "members": [b]}
        )
        return str(r.json()["conversation"]["id"])


async def connect(ip: InProcess, user: str) -> Client:
    client = await Client.connect_url(ip.ws_url, user)
    await client.request({"type": "ping"})  # start live delivery now
    return client


async def test_typing_start_expiry_and_stop_on_disconnect(in_process: InProcess) -> None:
    cid = await direct(in_process, "ta", "tb")
    tb = await connect(in_process, "tb")
    ta = await connect(in_process, "ta")
    assert ta.hello["typing_ttl_ms"] == 6000

    await ta.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert await tb.recv_type("typing") == {
        "type": "typing",
        "conversation_id": cid,
        "user_id": "ta",
        "state": "start",
    }
    await in_process.sweep(2)
    await ta.request({"type": "typing", "conversation_id": cid, "state": "start"})  # renewal
    await tb.no_frame(0.1, "typing")  # renewed soon after the start: not repeated
    await in_process.sweep(2)
    await ta.request({"type": "typing", "conversation_id": cid, "state": "start"})  # renewal
    again = await tb.recv_type("typing")  # half the ttl passed: repeated
    assert again["state"] == "start"
    await in_process.sweep(5)
    await tb.no_frame(0.1, "typing")  # renewed at 4 s: no stop at 9 s
    await in_process.sweep(2)
    stop = await tb.recv_type("typing")
    assert stop["state"] == "stop" and stop["user_id"] == "ta"

    await ta.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert (await tb.recv_type("typing"))["state"] == "start"
    await ta.send_message(cid, "sent")  # sending a message ends typing
    assert (await tb.recv_type("typing"))["state"] == "stop"

    await ta.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert (await tb.recv_type("typing"))["state"] == "start"
    resume = await tb.request({"type": "resume", "cursors": {cid: 99}})
    assert resume["conversations"][cid]["typing"] == ["ta"]
    await ta.close()
    assert (await tb.recv_type("typing"))["state"] == "stop"


async def test_typing_is_refused_for_outsiders_and_rate_limited(in_process: InProcess) -> None:
    cid = await direct(in_process, "ra", "rb")
    outsider = await connect(in_process, "rz")
    refused = await outsider.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert refused["code"] == "forbidden"
    ra = await connect(in_process, "ra")
    codes = [
        (await ra.request({"type": "typing", "conversation_id": cid, "state": "start"}))["type"]
        for _ in range(11)
    ]
    assert codes[:10] == ["ack"] * 10 and codes[10] == "error"
    await in_process.sweep(1.1)
    assert (await ra.request({"type": "typing", "conversation_id": cid, "state": "stop"}))[
        "type"
    ] == "ack"


async def test_presence_with_two_devices_and_grace(in_process: InProcess) -> None:
    await direct(in_process, "pa", "pw")
    watcher = await connect(in_process, "pw")
    phone = await connect(in_process, "pa")
    online = await watcher.recv_type("presence")
    assert (online["user_id"], online["status"]) == ("pa", "online")
    laptop = await connect(in_process, "pa")
    await phone.close()
    await in_process.sweep(10)
    await watcher.no_frame(0.1, "presence")  # still online on the laptop
    await laptop.close()
    await in_process.sweep(1)
    await watcher.no_frame(0.1, "presence")  # within the grace period
    back = await connect(in_process, "pa")
    await back.close()
    await in_process.sweep(4.5)
    await watcher.no_frame(0.1, "presence")  # the reconnect did not flap
    await in_process.sweep(1)
    offline = await watcher.recv_type("presence")
    assert (offline["user_id"], offline["status"]) == ("pa", "offline")
    assert offline["last_seen"]

    async with httpx.AsyncClient(base_url=in_process.url) as http:
        r = await http.get(
            "/api/v1/presence", params={"user": ["pa", "stranger"]}, headers=auth("pw")
        )
    assert r.json()["presence"] == [
        {"user_id": "pa", "status": "offline", "last_seen": offline["last_seen"]}
    ]


async def test_an_announcement_overtaken_by_events_is_not_sent(in_process: InProcess) -> None:
    await direct(in_process, "pw2", "flaky")
    watcher = await connect(in_process, "pw2")
    presence = in_process.app.presence
    # Announcements queue behind others (a reconnect storm): hold every slot.
    for _ in range(ANNOUNCE_CONCURRENCY):
        await presence._announcing.acquire()
    flaky = await connect(in_process, "flaky")
    await flaky.close()
    await asyncio.sleep(0.05)
    in_process.clock.advance(presence.grace + 1)
    presence.sweep()  # the grace has passed: offline is queued behind online
    for _ in range(ANNOUNCE_CONCURRENCY):
        presence._announcing.release()
    await in_process.sweep()
    # By the time "online" had its turn the user was gone: only "offline" is sent.
    offline = await watcher.recv_type("presence")
    assert (offline["user_id"], offline["status"]) == ("flaky", "offline")
    await watcher.no_frame(0.1, "presence")


async def test_typing_sent_with_a_close_is_stopped_at_once(in_process: InProcess) -> None:
    cid = await direct(in_process, "ty1", "ty2")
    watcher = await connect(in_process, "ty2")
    raw = await RawClient.connect(in_process.port, "ty1")
    await raw.frame()  # hello
    start = {"type": "typing", "id": 1, "conversation_id": cid, "state": "start"}
    # Both in one write: the close is read before the typing command runs.
    raw.writer.write(
        masked_frame(0x1, json.dumps(start).encode()) + masked_frame(0x8, (1000).to_bytes(2, "big"))
    )
    assert await raw.close_code() == 1000
    await raw.close()
    await in_process.sweep()
    # Either nothing, or a start followed at once by its stop: never a
    # typing indicator left on for a connection that is gone.
    frames = []
    while True:
        try:
            frames.append(await watcher.recv_type("typing", timeout=0.5))
        except TimeoutError:
            break
    assert [f["state"] for f in frames] in ([], ["start", "stop"])


async def test_blocking_hides_typing_and_presence(in_process: InProcess) -> None:
    async with httpx.AsyncClient(base_url=in_process.url) as http:
        r = await http.post(
            "/api/v1/conversations",
            headers=auth("ba"),
            json={"kind": "group", "title": "g", "members": ["bb", "bc"]},
        )
        cid = r.json()["conversation"]["id"]
        assert (await http.post("/api/v1/blocks/bb", headers=auth("ba"))).status_code == 200
        blocked = (await http.get("/api/v1/blocks", headers=auth("ba"))).json()
        assert blocked == {"blocked": ["bb"]}
    ba = await connect(in_process, "ba")
    bc = await connect(in_process, "bc")
    bb = await connect(in_process, "bb")
    while (await bc.recv_type("presence"))["user_id"] != "bb":
        pass  # ba came online first
    await bb.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert (await bc.recv_type("typing"))["user_id"] == "bb"
    # ba blocked bb: it sees neither bb's presence nor bb's typing (nor asks for it).
    while True:
        try:
            frame = await ba.recv(0.2)
        except TimeoutError:
            break
        assert frame.get("user_id") != "bb", frame
    async with httpx.AsyncClient(base_url=in_process.url) as http:
        r = await http.get("/api/v1/presence", params={"user": "bb"}, headers=auth("ba"))
    assert r.json()["presence"] == []
    # In the group, messages still flow both ways.
    sent = await bb.send_message(cid, "still here")
    assert (await ba.recv_type("message.new"))["message"]["id"] == sent["id"]


async def test_last_seen_survives_restart(fresh_server: ServerProcess) -> None:
    fresh_server.env["HUBBUB_PRESENCE_GRACE"] = "0.1"
    fresh_server.start()
    headers = auth("la")
    httpx.post(
        fresh_server.url + "/api/v1/conversations",
        headers=headers,
        json={"kind": "direct", "members": ["lb"]},
    )
    la = await Client.connect(fresh_server, "la")
    await la.close()
    fresh_server.stop()
    fresh_server.start()
    r = httpx.get(fresh_server.url + "/api/v1/presence", params={"user": "la"}, headers=auth("lb"))
    (entry,) = r.json()["presence"]
    assert entry["status"] == "offline" and entry["last_seen"]
    assert token("la") and new_id()


async def test_presence_reaches_a_silent_new_connection_while_messages_wait(
    fresh_server: ServerProcess,
) -> None:
    # Conversation events wait for a new connection's first command (or the
    # resume window) so that a resume can order them; presence has no place
    # in a replay and is not held.
    fresh_server.env.update(HUBBUB_RESUME_WINDOW="60")
    fresh_server.start()
    cid = open_direct(fresh_server, "quiet", "chatty")
    quiet = await Client.connect(fresh_server, "quiet")  # sends no command yet
    chatty = await Client.connect(fresh_server, "chatty")
    await chatty.request({"type": "ping"})
    online = await quiet.recv_type("presence")
    assert (online["user_id"], online["status"]) == ("chatty", "online")
    await chatty.send_message(cid, "waits for quiet's first command")
    group = create_group(fresh_server, "chatty", ["someone"])
    added = httpx.post(
        f"{fresh_server.url}/api/v1/conversations/{group}/members",
        headers=auth("chatty"),
        json={"members": ["quiet"]},
    )
    assert added.status_code == 200
    await quiet.no_frame(0.5)
    await quiet.request({"type": "ping"})
    got = [await quiet.recv() for _ in range(4)]
    assert got[0]["type"] == "message.new"
    assert got[0]["message"]["body"] == "waits for quiet's first command"
    # Conversation events wait too, in the documented order.
    assert [f["type"] for f in got[1:]] == [
        "member.joined",
        "conversation.created",
        "conversation.updated",
    ]


async def test_a_group_connecting_at_once_is_announced_once_each(in_process: InProcess) -> None:
    # Nineteen members connect together while a twentieth watches: their
    # arrivals after the first wait for presence batches, and the watcher
    # hears each of them exactly once.
    users = [f"crowd{i:02d}" for i in range(20)]
    async with httpx.AsyncClient(base_url=in_process.url) as http:
        r = await http.post(
            "/api/v1/conversations",
            headers=auth(users[0]),
            json={"kind": "group", "title": "crowd", "members": users[1:]},
        )
        assert r.status_code == 201
    watcher = await connect(in_process, users[0])
    await in_process.app.presence.drain()
    clients = await asyncio.gather(*(connect(in_process, u) for u in users[1:]))
    crowd = dict(zip(users[1:], clients, strict=True))
    try:
        heard = [(await watcher.recv_type("presence"))["user_id"] for _ in crowd]
        assert sorted(heard) == users[1:]
        await watcher.no_frame(0.2, "presence")
        # Of two newcomers, the one that was connected first hears the other
        # (the later one may have come after the first one's announcement).
        # Nobody hears anyone twice.
        hears: dict[str, list[str]] = {}
        for user, client in crowd.items():
            frames = await client.frames_within(0.05)
            hears[user] = [f["user_id"] for f in frames if f["type"] == "presence"]
            assert len(hears[user]) == len(set(hears[user])) and user not in hears[user]
        for a in crowd:
            for b in crowd:
                if a < b:
                    assert a in hears[b] or b in hears[a], (a, b)
    finally:
        for client in [watcher, *crowd.values()]:
            await client.close()
