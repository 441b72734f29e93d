"""Routing by interest: which channels carry an event, which a process wants."""

from __future__ import annotations

from hubbub.broker.base import Delivery
from hubbub.broker.routing import Channels, Interest, shard

CHANNELS = Channels("p:events", shards=64)


def apart(prefix: str, *taken: str) -> str:
    others = {shard(t, 64) for t in taken}
    return next(f"{prefix}{i}" for i in range(1000) if shard(f"{prefix}{i}", 64) not in others)


def test_an_event_of_a_conversation_goes_on_its_channel_with_every_recipient() -> None:
    routes = CHANNELS.routes(Delivery("c1", 3, ("a", "b"), b"x"))
    assert routes == [(CHANNELS.conversation("c1"), ("a", "b"))]
    assert CHANNELS.conversation("c1").startswith("p:events:c:")


def test_a_join_goes_on_the_joining_users_channels_too() -> None:
    joiner = apart("u", "a")
    routes = CHANNELS.routes(Delivery("c1", 3, ("a", joiner), b"x", joined=(joiner, joiner)))
    assert routes == [
        (CHANNELS.conversation("c1"), ("a", joiner)),
        (CHANNELS.user(joiner), ("a", joiner)),  # once per channel, every recipient
    ]


def test_an_event_of_no_conversation_is_split_by_user_channel() -> None:
    b = apart("b", "a")
    routes = CHANNELS.routes(Delivery("", 0, ("a", b), b"presence"))
    assert sorted(routes) == sorted([(CHANNELS.user("a"), ("a",)), (CHANNELS.user(b), (b,))])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_channel_no_longer_needed_lingers_then_goes() -> None:
    clock = Clock()
    interest = Interest(CHANNELS, linger=30, clock=clock)
    other = apart("c", "c1")
    interest.watch("c1")
    interest.watch(other)
    interest.watch_user("a")
    wanted = {CHANNELS.conversation("c1"), CHANNELS.conversation(other), CHANNELS.user("a")}
    assert interest.wanted() == wanted
    interest.unwatch(other)
    assert not interest.needed(CHANNELS.conversation(other))
    clock.now = 29.0
    assert interest.wanted() == wanted  # lingering
    interest.watch(other)  # back within the linger: never unsubscribed
    clock.now = 100.0
    assert interest.wanted() == wanted
    interest.unwatch(other)
    clock.now = 130.0
    assert interest.wanted() == wanted - {CHANNELS.conversation(other)}
    assert not interest.lingering()


def test_what_a_process_wants_to_receive() -> None:
    interest = Interest(CHANNELS)
    interest.watch("c1")
    interest.watch_user("a")
    assert interest.wants(Delivery("c1", 1, ("z",), b""))
    assert not interest.wants(Delivery("c2", 1, ("a",), b""))  # a shared channel's other
    assert interest.wants(Delivery("c2", 1, ("z", "a"), b"", joined=("a",)))  # a's join
    assert interest.wants(Delivery("", 0, ("a",), b""))
    assert not interest.wants(Delivery("", 0, ("z",), b""))
