"""Presence in large groups: subscriptions (the ``presence`` command) and online counts.

The servers here announce presence to every member only in groups of at most
three members (``presence_fanout_max=3``) and let a connection watch at most
four users (``presence_watch_max=4``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import InProcess, serve_in_process
from tests.support import Client, auth

FANOUT_MAX = 3
WATCH_MAX = 4


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with serve_in_process(
        tmp_path, presence_fanout_max=FANOUT_MAX, presence_watch_max=WATCH_MAX
    ) as served:
        yield served


async def group(ip: InProcess, owner: str, members: list[str]) -> str:
    async with httpx.AsyncClient(base_url=ip.url) as http:
        r = await http.post(
            "/api/v1/conversations",
            headers=auth(owner),
            json={"kind": "group", "title": "g", "members": members},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["conversation"]["id"])


async def connect(ip: InProcess, user: str) -> Client:
    client = await Client.connect_url(ip.ws_url, user)
    await client.request({"type": "ping"})
    return client


async def presence_heard(client: Client, within: float = 0.3) -> list[tuple[str, str]]:
    frames = await client.frames_within(within)
    return [(f["user_id"], f["status"]) for f in frames if f["type"] == "presence"]


async def test_a_small_group_keeps_hearing_every_member(small: InProcess) -> None:
    await group(small, "s1", ["s2", "s3"])  # three members: at the bound
    s1 = await connect(small, "s1")
    await small.sweep()
    s2 = await connect(small, "s2")
    await small.sweep()
    assert await presence_heard(s1) == [("s2", "online")]
    await s2.close()
    await small.sweep(small.app.presence.grace + 1)
    assert await presence_heard(s1) == [("s2", "offline")]


async def test_a_large_group_announces_nothing_to_its_members(small: InProcess) -> None:
    users = ["l1", "l2", "l3", "l4", "l5"]
    cid = await group(small, users[0], users[1:])
    clients = [await connect(small, u) for u in users]
    await small.sweep()
    for client in clients:
        assert await presence_heard(client, 0.1) == []
    # ... but anyone may count who is online.
    async with httpx.AsyncClient(base_url=small.url) as http:
        r = await http.get(f"/api/v1/conversations/{cid}/presence", headers=auth("l2"))
        assert r.json() == {"conversation_id": cid, "members": 5, "online": 5}
        outsider = await http.get(f"/api/v1/conversations/{cid}/presence", headers=auth("zz"))
        assert outsider.status_code == 404
        assert outsider.json()["error"]["code"] == "not_found"
    await clients[4].close()
    await small.sweep(small.app.presence.grace + 1)
    small.clock.advance(2)  # past the count's reuse
    async with httpx.AsyncClient(base_url=small.url) as http:
        r = await http.get(f"/api/v1/conversations/{cid}/presence", headers=auth("l2"))
        assert r.json()["online"] == 4


async def test_subscribed_users_are_told_and_the_rest_are_not(small: InProcess) -> None:
    users = ["w0", "w1", "w2", "w3", "w4", "w5"]
    await group(small, users[0], users[1:])
    watcher = await connect(small, "w0")
    w1 = await connect(small, "w1")
    reply = await watcher.request({"type": "presence", "subscribe": ["w1", "w2", "stranger", "w0"]})
    assert reply["type"] == "ack"
    states = {p["user_id"]: p["status"] for p in reply["presence"]}
    assert states == {"w1": "online", "w2": "offline"}
    # No conversation shared, or yourself: refused, not watched.
    assert reply["refused"] == ["stranger", "w0"] and reply["watching"] == 2
    w2 = await connect(small, "w2")
    w3 = await connect(small, "w3")  # not watched: not told
    await small.sweep()
    assert await presence_heard(watcher) == [("w2", "online")]
    await w1.close()
    await small.sweep(small.app.presence.grace + 1)
    assert await presence_heard(watcher) == [("w1", "offline")]

    reply = await watcher.request({"type": "presence", "unsubscribe": ["w2"]})
    assert reply["watching"] == 1 and reply["presence"] == []
    await w2.close()
    await w3.close()
    await small.sweep(small.app.presence.grace + 1)
    assert await presence_heard(watcher) == []


async def test_the_subscription_bound_is_enforced(small: InProcess) -> None:
    users = [f"b{i}" for i in range(7)]
    await group(small, users[0], users[1:])
    watcher = await connect(small, "b0")
    assert watcher.hello["limits"]["presence_subscriptions"] == WATCH_MAX  # told up front
    reply = await watcher.request({"type": "presence", "subscribe": users[1:5]})
    assert reply["watching"] == WATCH_MAX
    over = await watcher.request({"type": "presence", "subscribe": ["b5"]})
    assert over["type"] == "error" and over["code"] == "too_many_subscriptions"
    # Nothing changed; swapping one for another in one command fits.
    swap = await watcher.request({"type": "presence", "subscribe": ["b5"], "unsubscribe": ["b1"]})
    assert swap["watching"] == WATCH_MAX
    b5 = await connect(small, "b5")
    b1 = await connect(small, "b1")
    await small.sweep()
    assert await presence_heard(watcher) == [("b5", "online")]
    await b1.close()
    await b5.close()
    bad = await watcher.request({"type": "presence", "subscribe": "b1"})
    assert bad["type"] == "error" and bad["code"] == "invalid"
    empty = await watcher.request({"type": "presence", "subscribe": [""]})
    assert empty["code"] == "invalid"


async def test_a_blocked_user_is_not_revealed_by_a_subscription(small: InProcess) -> None:
    users = ["k0", "k1", "k2", "k3", "k4"]
    await group(small, users[0], users[1:])
    async with httpx.AsyncClient(base_url=small.url) as http:
        assert (await http.post("/api/v1/blocks/k1", headers=auth("k0"))).status_code == 200
    watcher = await connect(small, "k0")
    reply = await watcher.request({"type": "presence", "subscribe": ["k1", "k2"]})
    assert reply["refused"] == ["k1"]  # blocked by the watcher: no presence of theirs
    assert [p["user_id"] for p in reply["presence"]] == ["k2"]
    # Blocking someone already watched stops their presence at once.
    async with httpx.AsyncClient(base_url=small.url) as http:
        assert (await http.post("/api/v1/blocks/k2", headers=auth("k0"))).status_code == 200
    k1 = await connect(small, "k1")
    k2 = await connect(small, "k2")
    await small.sweep()
    assert await presence_heard(watcher) == []
    await k1.close()
    await k2.close()


async def test_subscriptions_end_with_their_connection(small: InProcess) -> None:
    users = ["e0", "e1", "e2", "e3", "e4"]
    await group(small, users[0], users[1:])
    first = await connect(small, "e0")
    second = await connect(small, "e0")  # another device of the same user
    await first.request({"type": "presence", "subscribe": ["e1"]})
    e1 = await connect(small, "e1")
    await small.sweep()
    assert await presence_heard(first) == [("e1", "online")]
    assert await presence_heard(second, 0.1) == []  # subscriptions are per connection
    await first.close()
    await small.sweep()
    assert small.app.presence.watches.of(first.hello["connection_id"]) == set()
    assert not small.app.presence.watches.watched("e1")
    await e1.close()
    await second.close()
