"""The HTTP fallback transport behind a load balancer that is not sticky.

A stream is held by one process; its posts may reach any process, which
relays them through Redis to the one holding the stream.
"""

from __future__ import annotations

import asyncio

from tests.scaleout.conftest import Cluster, PrivateRedis
from tests.support import Client, SseClient, create_group, new_id


async def test_posts_to_any_process_reach_the_stream_in_order(cluster: Cluster) -> None:
    first, second, third = cluster.nodes
    cid = create_group(first, "sa", ["sb"])
    streamed = await SseClient.connect(first.url, "sa", post_to=second.url)
    other = await Client.connect(third, "sb")
    await other.request({"type": "ping"})
    assert (await streamed.request({"type": "ping"}))["type"] == "ack"

    sent = []
    for i in range(20):
        # Alternate the process each post reaches, as a round-robin balancer would.
        streamed.post_url = (first, second, third)[i % 3].url
        sent.append(await streamed.send_message(cid, f"n{i}", client_msg_id=new_id()))
    assert [m["body"] for m in sent] == [f"n{i}" for i in range(20)]
    assert [m["seq"] for m in sent] == list(range(1, 21))
    got = [await other.recv_type("message.new") for _ in range(20)]
    assert [f["message"]["id"] for f in got] == [m["id"] for m in sent]

    reply = await other.send_message(cid, "from the third process")
    frames = [await streamed.recv_type("message.new") for _ in range(21)]
    assert frames[-1]["message"]["id"] == reply["id"]
    assert [f["seq"] for f in frames] == list(range(1, 22))  # its own, then the reply
    await streamed.close()


async def test_a_post_for_a_process_that_is_gone_is_not_found(cluster: Cluster) -> None:
    first, second, _ = cluster.nodes
    streamed = await SseClient.connect(first.url, "sc", post_to=second.url)
    assert (await streamed.request({"type": "ping"}))["type"] == "ack"
    await asyncio.get_running_loop().run_in_executor(None, first.kill)
    gone = await streamed.post(b'{"type":"ping","id":9}')
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


async def test_without_redis_a_relayed_post_is_unavailable(
    cluster_on_private_redis: Cluster, private_redis: PrivateRedis
) -> None:
    first, second, _ = cluster_on_private_redis.nodes
    streamed = await SseClient.connect(first.url, "sd", post_to=second.url)
    assert (await streamed.request({"type": "ping"}))["type"] == "ack"
    private_redis.stop()
    refused = await streamed.post(b'{"type":"ping","id":7}')
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
    streamed.post_url = first.url  # the process holding the stream needs no Redis
    assert (await streamed.request({"type": "ping"}))["type"] == "ack"
