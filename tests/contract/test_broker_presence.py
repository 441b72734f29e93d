"""The broker and presence contracts, run against memory and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hubbub.broker.base import Broker, Delivery
from hubbub.broker.memory import MemoryBroker
from hubbub.broker.redis import RedisBroker
from hubbub.broker.routing import shard
from hubbub.clock import ManualClock
from hubbub.presence.memory import MemoryPresence
from hubbub.presence.redis import RedisPresence
from hubbub.service.fanout import Fanout
from hubbub.service.presence import ANNOUNCE_CONCURRENCY, PresenceService
from hubbub.store.sqlite import SQLiteStore
from tests.services import REDIS_URL, need
from tests.support import until


@pytest.fixture(params=["memory", "redis"])
async def brokers(request: pytest.FixtureRequest) -> AsyncIterator[list[Broker]]:
    """A broker of each implementation."""
    if request.param == "memory":
        made: list[Broker] = [MemoryBroker()]
    else:
        need(REDIS_URL, 6379, "Redis")
        made = [RedisBroker(REDIS_URL, f"hubbub:test:{uuid.uuid4().hex}")]
    for broker in made:
        await broker.start()
    yield made
    for broker in made:
        await broker.stop()


def delivery(seq: int) -> Delivery:
    return Delivery("c1", seq, ("u1", "u2"), b'{"type":"x","seq":%d}' % seq)


async def test_local_subscribers_get_a_delivery_at_once(brokers: list[Broker]) -> None:
    got: list[Delivery] = []
    brokers[0].subscribe(got.append)
    brokers[0].publish(delivery(1))
    assert got == [delivery(1)]  # synchronously, no round trip
    assert brokers[0].healthy


@pytest.fixture
async def redis_brokers() -> AsyncIterator[list[Broker]]:
    """Two Redis brokers on one channel, as two processes have them."""
    need(REDIS_URL, 6379, "Redis")
    channel = f"hubbub:test:{uuid.uuid4().hex}"
    made: list[Broker] = [RedisBroker(REDIS_URL, channel), RedisBroker(REDIS_URL, channel)]
    for broker in made:
        await broker.start()
    yield made
    for broker in made:
        await broker.stop()


async def test_other_processes_get_each_delivery_once_in_order(
    redis_brokers: list[Broker],
) -> None:
    brokers = redis_brokers
    here: list[Delivery] = []
    there: list[Delivery] = []
    brokers[0].subscribe(here.append)
    brokers[1].subscribe(there.append)
    for seq in range(1, 201):
        brokers[0].publish(delivery(seq))
    await until(lambda: len(there) >= 200)
    await asyncio.sleep(0.1)
    assert there == [delivery(s) for s in range(1, 201)]
    assert here == there  # the publisher's own copy is not delivered twice


@pytest.fixture(params=["memory", "redis"])
async def presences(request: pytest.FixtureRequest) -> AsyncIterator[list[Any]]:
    if request.param == "memory":
        made: list[Any] = [MemoryPresence()]
    else:
        need(REDIS_URL, 6379, "Redis")
        prefix = f"hubbub:test:{uuid.uuid4().hex}:"
        made = [RedisPresence(REDIS_URL, ttl=0.6, prefix=prefix) for _ in range(2)]
    for presence in made:
        await presence.start()
    yield made
    for presence in made:
        await presence.stop()


async def test_online_while_any_process_serves(presences: list[Any]) -> None:
    a = presences[0]
    assert await a.came_online("ann") is True
    assert await a.came_online("ann") is False
    assert await a.online(["ann", "bob"]) == {"ann"}
    if len(presences) > 1:
        b = presences[1]
        assert await b.came_online("ann") is False  # already online through a
        assert await a.went_offline("ann") is False  # still online through b
        assert await b.online(["ann"]) == {"ann"}
        assert await b.went_offline("ann") is True
    else:
        assert await a.went_offline("ann") is True
    assert await a.online(["ann"]) == set()


async def test_redis_lost_between_the_sets_and_the_heartbeats_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis answers the membership pipeline, then drops the connection before the
    heartbeats are read (as when it restarts): announced anyway, as when the pipeline
    fails, with a warning and no traceback."""
    need(REDIS_URL, 6379, "Redis")
    prefix = f"hubbub:test:{uuid.uuid4().hex}:"
    a, b = (RedisPresence(REDIS_URL, ttl=5, prefix=prefix) for _ in range(2))
    await a.start()
    await b.start()
    try:
        assert await b.came_online("eve") is True  # served by b: a must read b's heartbeat

        async def closed(*args: object, **kwargs: object) -> None:
            raise RedisConnectionError("Connection closed by server.")

        monkeypatch.setattr(a._client, "mget", closed)
        assert await a.came_online("eve") is True
        assert await a.went_offline("eve") is True
    finally:
        await a.stop()
        await b.stop()
    assert "presence not recorded for eve: Connection closed by server." in caplog.text
    assert "presence not cleared for eve: Connection closed by server." in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_dead_process_takes_its_users_offline() -> None:
    need(REDIS_URL, 6379, "Redis")
    prefix = f"hubbub:test:{uuid.uuid4().hex}:"
    a, b = (RedisPresence(REDIS_URL, ttl=0.6, prefix=prefix) for _ in range(2))
    await a.start()
    await b.start()
    left: list[list[str]] = []
    b.on_expired(left.append)
    await a.came_online("cat")
    await b.came_online("dan")
    assert a._task is not None  # start() made the heartbeat task
    a._task.cancel()  # a dies: no more heartbeats, no clean-up
    await until(lambda: left, timeout=5)
    assert left == [["cat"]]
    assert await b.online(["cat", "dan"]) == {"dan"}
    await b.stop()
    await a._client.aclose()  # the dead process's socket, for a clean test


async def test_a_queued_online_survives_another_process_taking_the_user_over(
    tmp_path: Any,
) -> None:
    """Process A's "online" waits its turn; meanwhile the user moves to process B.

    B says nothing (A still served the user), A's grace ends silently (B
    serves the user now): A's queued "online" is then the only word watchers
    get, so it must still be published.
    """
    need(REDIS_URL, 6379, "Redis")
    prefix = f"hubbub:test:{uuid.uuid4().hex}:"
    store = SQLiteStore(tmp_path / "h.db")
    await store.open()
    await store.get_or_create_direct("watcher", "flaky", 0)
    broker = MemoryBroker()
    await broker.start()
    heard: list[dict[str, Any]] = []
    broker.subscribe(lambda d: heard.append(json.loads(d.payload)))
    clock = ManualClock()
    clusters = [RedisPresence(REDIS_URL, ttl=5, prefix=prefix) for _ in range(2)]
    for cluster in clusters:
        await cluster.start()
    a, b = (
        PresenceService(store, Fanout(store, broker, shared=True), clock, cluster=cluster)
        for cluster in clusters
    )
    try:
        for _ in range(ANNOUNCE_CONCURRENCY):  # A is busy announcing others
            await a._announcing.acquire()
        a.connected("flaky")
        await until(lambda: "flaky" in a._latest)
        a.disconnected("flaky", "conn-1")
        b.connected("flaky")  # the client reconnected to B within A's grace
        await b.drain()
        clock.advance(a.grace + 1)
        a.sweep()
        await asyncio.sleep(0.1)  # A's went_offline finds B serving the user
        for _ in range(ANNOUNCE_CONCURRENCY):
            a._announcing.release()
        await a.drain()
        assert [(e["user_id"], e["status"]) for e in heard] == [("flaky", "online")]
        assert await clusters[1].online(["flaky"]) == {"flaky"}
    finally:
        for cluster in clusters:
            await cluster.stop()
        await broker.stop()
        await store.close()


async def test_redis_counts_what_it_relays(redis_brokers: list[Broker]) -> None:
    first, second = redis_brokers
    assert isinstance(first, RedisBroker) and isinstance(second, RedisBroker)
    lags: list[float] = []
    first.observe_lag = lags.append
    there: list[Delivery] = []
    second.subscribe(there.append)
    for seq in range(1, 11):
        first.publish(delivery(seq))
    # Counted once Redis took the batch, which may be after it was delivered.
    await until(lambda: len(there) == 10 and first.published == 10)
    assert second.received == 10
    assert first.received == 0  # its own events come back and are not counted
    assert lags and all(0 <= lag < 5 for lag in lags)


async def test_the_census_counts_live_processes_and_their_users() -> None:
    need(REDIS_URL, 6379, "Redis")
    prefix = f"hubbub:test:{uuid.uuid4().hex}:"
    a, b = (RedisPresence(REDIS_URL, ttl=5, prefix=prefix) for _ in range(2))
    await a.start()
    await b.start()
    for user in ("ann", "bob"):
        await a.came_online(user)
    for user in ("bob", "cat"):
        await b.came_online(user)
    assert await a.census() == (2, 3)  # bob counted once
    await b.stop()  # a clean stop ends its heartbeat: no longer live
    assert await a.census() == (1, 2)
    await a.stop()


async def test_lag_probes_are_measured_and_never_delivered() -> None:
    need(REDIS_URL, 6379, "Redis")
    channel = f"hubbub:test:{uuid.uuid4().hex}"
    first = RedisBroker(REDIS_URL, channel, probe_interval=0.05)
    second = RedisBroker(REDIS_URL, channel, probe_interval=3600)
    lags: list[float] = []
    second.observe_receive_lag = lags.append
    there: list[Delivery] = []
    second.subscribe(there.append)
    await first.start()
    await second.start()
    try:
        await until(lambda: len(lags) >= 3)
        assert all(0 <= lag < 5 for lag in lags)
        assert there == [] and second.received == 0  # a probe is not an event
    finally:
        await first.stop()
        await second.stop()


async def test_published_changes_reach_every_process_once(presences: list[Any]) -> None:
    heard: list[list[tuple[str, str, int]]] = [[] for _ in presences]
    for presence, got in zip(presences, heard, strict=True):
        presence.on_status(lambda *change, got=got: got.append(change))
    presences[0].publish("ann", "online", 1)
    assert heard[0] == [("ann", "online", 1)]  # its own process at once, no round trip
    for n in range(2, 602):  # more than one message's worth
        presences[-1].publish("bob", "offline" if n % 2 else "online", n)
    expected = [("bob", "offline" if n % 2 else "online", n) for n in range(2, 602)]
    await until(lambda: all(len(got) >= 1 + len(expected) for got in heard))
    await asyncio.sleep(0.05)
    for got in heard:  # once each, in the order each process published them
        assert [c for c in got if c[0] == "ann"] == [("ann", "online", 1)]
        assert [c for c in got if c[0] == "bob"] == expected


async def test_online_looks_at_many_users_across_processes(presences: list[Any]) -> None:
    users = [f"u{i}" for i in range(500)]
    for i, user in enumerate(users[:300]):
        assert await presences[i % len(presences)].came_online(user)
    for presence in presences:
        assert await presence.online(users) == set(users[:300])
    for i, user in enumerate(users[:100]):
        await presences[i % len(presences)].went_offline(user)
    assert await presences[0].online(users) == set(users[100:300])


# Routing by interest (broker/routing.py) --------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def watching_broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    """A broker of each implementation, the Redis one routing by interest."""
    broker: Broker
    if request.param == "memory":
        broker = MemoryBroker()
    else:
        need(REDIS_URL, 6379, "Redis")
        channel = f"hubbub:test:{uuid.uuid4().hex}"
        broker = RedisBroker(REDIS_URL, channel, routing="interest", shards=64, linger=0.2)
    await broker.start()
    yield broker
    await broker.stop()


async def test_watching_is_counted_per_interested_party(watching_broker: Broker) -> None:
    broker = watching_broker
    assert isinstance(broker, MemoryBroker | RedisBroker)
    broker.watch("c1")
    broker.watch("c1")  # two connected members of c1
    broker.watch_user("u1")
    assert await broker.watched("c1")
    broker.unwatch("c1")
    assert broker.interest.conversations == {"c1": 1}
    broker.unwatch("c1")
    broker.unwatch("c1")  # one too many: nothing to undo, nothing breaks
    assert broker.interest.conversations == {}
    assert broker.interest.users == {"u1": 1}
    broker.unwatch_user("u1")
    assert broker.interest.users == {}


def apart(prefix: str, shards: int, *taken: str) -> str:
    """A conversation or user id whose channel is none of ``taken``'s."""
    others = {shard(t, shards) for t in taken}
    return next(f"{prefix}{i}" for i in range(1000) if shard(f"{prefix}{i}", shards) not in others)


@pytest.fixture
async def routed_pair() -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    """Two Redis brokers routing by interest on one prefix, as two processes have them."""
    need(REDIS_URL, 6379, "Redis")
    channel = f"hubbub:test:{uuid.uuid4().hex}"
    made = [RedisBroker(REDIS_URL, channel, routing="interest", shards=64, linger=0.2)]
    made.append(RedisBroker(REDIS_URL, channel, routing="interest", shards=64, linger=0.2))
    for broker in made:
        await broker.start()
    yield made[0], made[1]
    for broker in made:
        await broker.stop()


async def test_a_process_receives_only_what_it_watches(
    routed_pair: tuple[RedisBroker, RedisBroker],
) -> None:
    sender, receiver = routed_pair
    got: list[Delivery] = []
    receiver.subscribe(got.append)
    watched = "c_watched"
    other = apart("c_other", 64, watched)
    receiver.watch(watched)
    assert await receiver.watched(watched)
    assert receiver.channels.conversation(watched) in receiver.subscribed
    sender.publish(Delivery(other, 1, ("u1",), b"other"))
    sender.publish(Delivery(watched, 1, ("u1",), b"watched"))
    await until(lambda: len(got) == 1)
    await asyncio.sleep(0.1)
    assert [d.payload for d in got] == [b"watched"]
    assert receiver.received == 1 and receiver.unwanted == 0  # "other" never came

    receiver.unwatch(watched)  # lingers 0.2 s, then is unsubscribed
    await until(lambda: receiver.channels.conversation(watched) not in receiver.subscribed)
    sender.publish(Delivery(watched, 2, ("u1",), b"late"))
    await asyncio.sleep(0.2)
    assert [d.payload for d in got] == [b"watched"]


async def test_a_join_reaches_the_joining_users_process_once(
    routed_pair: tuple[RedisBroker, RedisBroker],
) -> None:
    sender, receiver = routed_pair
    got: list[Delivery] = []
    receiver.subscribe(got.append)
    joiner = "u_joiner"
    cid = apart("c_new", 64)
    receiver.watch_user(joiner)  # connected there; the conversation not watched yet
    await until(lambda: receiver.channels.user(joiner) in receiver.subscribed)
    join = Delivery(cid, 7, ("u_owner", joiner), b"joined", joined=(joiner,))
    sender.publish(join)
    await until(lambda: len(got) == 1)
    assert got == [join]

    receiver.watch(cid)  # now on both of the join's channels: still once
    assert await receiver.watched(cid)
    again = Delivery(cid, 8, ("u_owner", joiner), b"joined again", joined=(joiner,))
    sender.publish(again)
    sender.publish(Delivery(cid, 9, ("u_owner", joiner), b"after"))
    await until(lambda: len(got) == 3)
    await asyncio.sleep(0.1)
    assert [d.payload for d in got] == [b"joined", b"joined again", b"after"]


async def test_an_event_of_no_conversation_goes_to_its_recipients_channels(
    routed_pair: tuple[RedisBroker, RedisBroker],
) -> None:
    sender, receiver = routed_pair
    got: list[Delivery] = []
    receiver.subscribe(got.append)
    here = "u_here"
    elsewhere = apart("u_elsewhere", 64, here)
    receiver.watch_user(here)
    await until(lambda: receiver.channels.user(here) in receiver.subscribed)
    sender.publish(Delivery("", 0, (elsewhere, here), b"presence"))
    sender.publish(Delivery("", 0, (elsewhere,), b"not for here"))
    await until(lambda: len(got) == 1)
    await asyncio.sleep(0.1)
    assert got == [Delivery("", 0, (here,), b"presence")]  # its channel's recipients only
