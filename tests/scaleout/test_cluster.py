"""Several hubbub processes behave as one: ordering, presence, Redis failures."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.scaleout.conftest import Cluster, PrivateRedis
from tests.support import Client, ServerProcess, auth, create_group, new_id


class Member:
    """A client that keeps per-conversation cursors and resumes when told to."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: dict[str, list[int]] = {}
        self.messages: dict[str, list[str]] = {}

    def cursor(self, cid: str) -> int:
        return max(self.seen.get(cid, [0]))

    def take(self, frame: dict[str, Any]) -> None:
        if "seq" in frame and "conversation_id" in frame and frame["type"] != "receipt":
            cid = frame["conversation_id"]
            self.seen.setdefault(cid, []).append(frame["seq"])
            if frame["type"] == "message.new":
                self.messages.setdefault(cid, []).append(frame["message"]["id"])

    async def pump(self, cid: str, until: int, timeout: float = 20) -> None:
        """Read frames until the cursor reaches ``until``; resume when asked to."""
        deadline = time.monotonic() + timeout
        while self.cursor(cid) < until:
            assert time.monotonic() < deadline, f"stuck at {self.cursor(cid)} of {until}"
            try:
                frame = await self.client.recv(timeout=1)
            except TimeoutError:
                continue
            if frame["type"] == "resync":
                await self.client.send({"type": "resume", "cursors": {cid: self.cursor(cid)}})
            self.take(frame)


async def test_concurrent_sends_from_every_process_arrive_in_order_everywhere(
    cluster: Cluster,
) -> None:
    users = [f"m{i}" for i in range(6)]
    cid = create_group(cluster.nodes[0], users[0], users[1:])
    # Two members per process; everyone both sends and receives.
    members = [
        Member(await Client.connect(cluster.nodes[i % 3], user)) for i, user in enumerate(users)
    ]
    # Each tells its session where it stands, as a client does on connecting:
    # a process that first sees the conversation at a later seq (another
    # process's publication overtook the first one's) then fills the gap.
    for m in members:
        reply = await m.client.request({"type": "resume", "cursors": {cid: 0}})
        assert reply["type"] == "ack", reply

    async def send_many(m: Member, n: int) -> list[str]:
        ids = []
        for i in range(n):
            reply = await m.client.request(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "body": f"{i}",
                    "client_msg_id": new_id(),
                },
                timeout=10,
            )
            assert reply["type"] == "ack", reply
            ids.append(reply["message"]["id"])
        return ids

    per_sender = 25
    sent = await asyncio.gather(*(send_many(m, per_sender) for m in members))
    total = per_sender * len(members)
    for m in members:
        await m.pump(cid, total)
    for m in members:
        seqs = m.seen[cid]
        assert seqs == list(range(1, total + 1)), "not strictly increasing and gap-free"
        assert sorted(m.messages[cid]) == sorted(i for ids in sent for i in ids)
    # Each sender's own messages are in its sending order in the stream.
    order = members[0].messages[cid]
    for ids in sent:
        assert [i for i in order if i in set(ids)] == ids


def presence_of(node: ServerProcess, viewer: str, user: str) -> dict[str, Any]:
    r = httpx.get(node.url + "/api/v1/presence", params={"user": user}, headers=auth(viewer))
    (entry,) = r.json()["presence"]
    return dict(entry)


async def test_presence_across_processes_and_after_a_crash(cluster: Cluster) -> None:
    a, b, _ = cluster.nodes
    create_group(a, "pw", ["po"])
    watcher = await Client.connect(b, "pw")
    await watcher.request({"type": "ping"})
    online = await Client.connect(a, "po")
    assert (await watcher.recv_type("presence"))["status"] == "online"
    assert presence_of(b, "pw", "po")["status"] == "online"

    a.kill()  # SIGKILL: no shutdown code runs on a
    started = time.monotonic()
    offline = await watcher.recv_type("presence", timeout=10)
    took = time.monotonic() - started
    assert (offline["user_id"], offline["status"]) == ("po", "offline")
    assert took < 1.5 + 0.5 + 1.0  # ttl + ttl/3 (documented bound) + scheduling slack
    assert presence_of(b, "pw", "po")["status"] == "offline"
    del online


async def test_every_acked_message_arrives_after_redis_restarts(
    cluster_on_private_redis: Cluster, private_redis: PrivateRedis
) -> None:
    nodes = cluster_on_private_redis.nodes
    users = [f"r{i}" for i in range(3)]
    cid = create_group(nodes[0], users[0], users[1:])
    members = [Member(await Client.connect(nodes[i], u)) for i, u in enumerate(users)]
    for m in members:
        await m.client.request({"type": "ping"})

    acked: list[str] = []

    async def traffic(n: int) -> None:
        for i in range(n):
            sender = members[i % 3]
            reply = await sender.client.request(
                {
                    "type": "message.send",
                    "conversation_id": cid,
                    "body": f"t{i}",
                    "client_msg_id": new_id(),
                },
                timeout=10,
            )
            assert reply["type"] == "ack", reply
            acked.append(reply["message"]["id"])
            await asyncio.sleep(0.01)

    await traffic(20)
    private_redis.stop()  # in the middle of traffic
    await traffic(20)
    health = httpx.get(nodes[1].url + "/health").json()
    assert health["status"] == "degraded" and health["broker"] == "unreachable"
    private_redis.start()
    await traffic(20)
    for m in members:
        await m.pump(cid, 60, timeout=30)
    for m in members:
        assert m.messages[cid] == acked, "lost, duplicated or reordered"
        assert m.seen[cid] == sorted(set(m.seen[cid]))
    assert httpx.get(nodes[1].url + "/health").json()["status"] == "ok"


async def test_membership_changed_on_one_process_holds_on_the_others(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    cid = create_group(a, "ko", ["kr"])
    removed = await Client.connect(c, "kr")
    newcomer = await Client.connect(c, "kn")
    sender = await Client.connect(b, "ko")
    for client in (removed, newcomer, sender):
        await client.request({"type": "ping"})
    first = await sender.send_message(cid, "both members see this")  # warms b's view
    assert (await removed.recv_type("message.new"))["message"]["id"] == first["id"]

    base = f"{a.url}/api/v1/conversations/{cid}"
    assert httpx.delete(base + "/members/kr", headers=auth("ko")).status_code == 200
    assert (
        httpx.post(base + "/members", headers=auth("ko"), json={"members": ["kn"]}).status_code
        == 200
    )
    after = await sender.send_message(cid, "only current members see this")
    got = await newcomer.recv_type("message.new")
    assert got["message"]["id"] == after["id"]
    assert (await removed.recv_type("member.left"))["user_id"] == "kr"
    await removed.no_frame(0.5, "message.new")
