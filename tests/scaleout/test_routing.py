"""Routing by interest: a process receives the events of its users' conversations only."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from hubbub.broker.routing import SHARDS, shard
from tests.scaleout.conftest import Cluster, PrivateRedis
from tests.scaleout.test_operations_cluster import sample
from tests.support import Client, FrameClient, ServerProcess, auth, create_group


def stream_events(frames: list[dict[str, Any]], cid: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("conversation_id") == cid and f.get("seq")]


async def collect(
    client: FrameClient, cid: str, count: int, timeout: float
) -> list[dict[str, Any]]:
    """The stream events of ``cid`` the client receives until ``count`` or ``timeout``.

    The client does not ``resume``: what arrives came live, from the server.
    """
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += stream_events(await client.frames_within(0.2), cid)
    got += stream_events(await client.frames_within(0.5), cid)  # nothing more, no duplicate
    return got


def add_member(server: ServerProcess, owner: str, cid: str, user: str) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/conversations/{cid}/members",
        headers=auth(owner),
        json={"members": [user]},
    )
    assert r.status_code == 200, r.text


def received(server: ServerProcess) -> float:
    return sample(server, "hubbub_broker_received_total")


async def test_a_process_without_members_receives_none_of_the_events(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    busy = create_group(a, "pa", ["pb"])
    other = create_group(a, "pc", ["pd"])
    while shard(other, SHARDS) == shard(busy, SHARDS):  # one channel: c would receive both
        other = create_group(a, "pc", ["pd"])
    sender, reader = await Client.connect(a, "pa"), await Client.connect(b, "pb")
    lone, partner = await Client.connect(c, "pc"), await Client.connect(a, "pd")
    for client in (sender, reader, lone, partner):
        await client.request({"type": "ping"})
    await asyncio.sleep(1.0)  # presence of the connections above has gone out
    before_b, before_c = received(b), received(c)

    for i in range(20):
        await sender.send_message(busy, f"m{i}")
    assert len(await collect(reader, busy, 20, 10)) == 20
    await partner.send_message(other, "for c")  # c's own conversation still reaches it
    assert len(await collect(lone, other, 1, 10)) == 1

    assert received(b) - before_b >= 20
    assert received(c) - before_c == 1, "a process with no member received another's events"
    assert sample(c, "hubbub_broker_unwanted_total") == 0
    assert sample(c, "hubbub_broker_watched") == 1


async def test_a_first_connection_gets_live_every_message_sent_after_its_hello(
    cluster: Cluster,
) -> None:
    """``hello`` waits until the process receives the user's conversations."""
    a, b, _ = cluster.nodes
    for i in range(8):
        cid = create_group(a, f"ho{i}", [f"hu{i}"])  # no user of b is in it before
        sender = await Client.connect(a, f"ho{i}")
        await sender.request({"type": "ping"})
        reader = await Client.connect(b, f"hu{i}")  # no resume, no ping: hello alone
        sent = await sender.send_message(cid, "right after hello")
        got = await collect(reader, cid, 1, 5)
        assert [e["message"]["id"] for e in got] == [sent["id"]], f"connection {i}"
        await sender.close()
        await reader.close()


async def test_a_member_joining_gets_the_join_and_every_message_after_it(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.nodes
    cid = create_group(a, "jo", ["jm"])
    owner, member = await Client.connect(a, "jo"), await Client.connect(b, "jm")
    newcomer = await Client.connect(c, "jn")  # c follows nothing of cid yet
    for client in (owner, member, newcomer):
        await client.request({"type": "ping"})
    await owner.send_message(cid, "before the join")

    add_member(b, "jo", cid, "jn")  # on another process than the sends
    sent = [(await owner.send_message(cid, f"after {i}"))["id"] for i in range(10)]

    got = await collect(newcomer, cid, 11, 15)
    assert [e["type"] for e in got] == ["member.joined"] + ["message.new"] * 10, got
    assert got[0]["user_id"] == "jn"
    assert [e["message"]["id"] for e in got[1:]] == sent
    seqs = [e["seq"] for e in got]
    assert seqs == list(range(seqs[0], seqs[0] + 11)), "gap or duplicate"


async def test_a_user_on_two_processes_gets_everything_on_both(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    here, there = await Client.connect(b, "tu"), await Client.connect(c, "tu")
    owner = await Client.connect(a, "to")
    for client in (here, there, owner):
        await client.request({"type": "ping"})
    cid = create_group(a, "to", ["tu"])  # new: neither b nor c followed it
    sent = [(await owner.send_message(cid, f"m{i}"))["id"] for i in range(10)]
    for client in (here, there):
        got = await collect(client, cid, 10, 15)
        assert [e["message"]["id"] for e in got] == sent

    await there.close()  # c's last session of tu: c stops following cid
    more = [(await owner.send_message(cid, f"n{i}"))["id"] for i in range(5)]
    got = await collect(here, cid, 5, 10)
    assert [e["message"]["id"] for e in got] == more


async def test_a_join_during_a_redis_outage_arrives_once_after_it(
    cluster_on_private_redis: Cluster, private_redis: PrivateRedis
) -> None:
    a, b, c = cluster_on_private_redis.nodes
    cid = create_group(a, "ro", ["rm"])
    owner, member = await Client.connect(a, "ro"), await Client.connect(b, "rm")
    newcomer = await Client.connect(c, "rn")
    for client in (owner, member, newcomer):
        await client.request({"type": "ping"})
    await owner.send_message(cid, "before")

    private_redis.stop()
    add_member(a, "ro", cid, "rn")  # published while no process hears it
    during = [(await owner.send_message(cid, f"during {i}"))["id"] for i in range(5)]
    await asyncio.sleep(0.5)
    private_redis.start()

    got = await collect(newcomer, cid, 6, 20)
    assert [e["type"] for e in got] == ["member.joined"] + ["message.new"] * 5, got
    assert [e["message"]["id"] for e in got[1:]] == during
    # And c follows the conversation from now on.
    after = [(await owner.send_message(cid, f"after {i}"))["id"] for i in range(3)]
    got = await collect(newcomer, cid, 3, 10)
    assert [e["message"]["id"] for e in got] == after
