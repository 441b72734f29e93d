"""Fanout: who receives an event, its bounded caches, and what it hands the broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from hubbub.broker.base import Delivery
from hubbub.models import StreamEvent
from hubbub.protocol import events
from hubbub.service import fanout as fanout_module
from hubbub.service.fanout import Fanout
from hubbub.store.base import Store
from tests.unit.service_rig import Rig, running


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path) as built:
        yield built


def event(cid: str, seq: int, type_: str, **data: object) -> StreamEvent:
    return StreamEvent(conversation_id=cid, seq=seq, type=type_, data=dict(data) or None)


async def test_members_are_read_once_then_cached(rig: Rig) -> None:
    g = await rig.group("own", "mem")
    fresh = Fanout(cast(Store, rig.hooked), rig.broker)
    rig.hooked.calls.clear()
    assert set(await fresh.members(g.id)) == {"own", "mem"}
    assert set(await fresh.members(g.id)) == {"own", "mem"}
    assert rig.hooked.calls == ["member_ids"]
    assert set(fresh.cached(g.id) or ()) == {"own", "mem"}


async def test_an_unknown_conversation_has_no_members_and_is_not_cached(rig: Rig) -> None:
    rig.hooked.calls.clear()
    assert await rig.fanout.members("c_missing") == ()
    assert await rig.fanout.members("c_missing") == ()
    assert rig.fanout.cached("c_missing") is None
    assert rig.hooked.calls == ["member_ids", "member_ids"]


async def test_the_member_cache_is_bounded_and_keeps_the_recently_used(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout_module, "CACHE_SIZE", 2)
    fanout = rig.fanout
    assert fanout.remember("c_a", ["a"]) == ("a",)
    fanout.remember("c_b", iter(["b"]))
    assert await fanout.members("c_a") == ("a",)  # a use: c_b is now the oldest
    fanout.remember("c_c", ["c"])
    assert fanout.cached("c_b") is None
    assert (fanout.cached("c_a"), fanout.cached("c_c")) == (("a",), ("c",))
    fanout.remember("c_a", ["a", "z"])  # remembering again refreshes too
    fanout.remember("c_d", ["d"])
    assert fanout.cached("c_c") is None and fanout.cached("c_a") == ("a", "z")


async def test_blockers_are_cached_until_forgotten(rig: Rig) -> None:
    rig.hooked.calls.clear()
    assert await rig.fanout.blockers("ann") == frozenset()
    await rig.store.block("bob", "ann", 0)  # behind the service's back
    assert await rig.fanout.blockers("ann") == frozenset()
    assert rig.hooked.calls == ["blockers_of"]
    rig.fanout.forget_blockers("ann")
    rig.fanout.forget_blockers("never-cached")
    assert await rig.fanout.blockers("ann") == frozenset({"bob"})


async def test_the_blocker_cache_is_bounded(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout_module, "CACHE_SIZE", 2)
    for user in ("u1", "u2", "u3"):
        assert await rig.fanout.blockers(user) == frozenset()
    await rig.store.block("x", "u1", 0)
    await rig.store.block("x", "u3", 0)
    assert await rig.fanout.blockers("u1") == frozenset({"x"})  # evicted, so read again
    assert await rig.fanout.blockers("u3") == frozenset()  # still cached


async def test_with_several_processes_nothing_is_cached(tmp_path: Path) -> None:
    async with running(tmp_path, shared=True) as rig:
        g = await rig.group("own", "mem")
        fanout = rig.fanout
        assert fanout.remember(g.id, ["x"]) == ("x",)
        assert fanout.cached(g.id) is None
        rig.hooked.calls.clear()
        assert set(await fanout.members(g.id)) == {"own", "mem"}
        assert set(await fanout.members(g.id)) == {"own", "mem"}
        assert await fanout.blockers("mem") == frozenset()
        await rig.store.block("own", "mem", 0)
        assert await fanout.blockers("mem") == frozenset({"own"})
        assert rig.hooked.calls == ["member_ids", "member_ids", "blockers_of", "blockers_of"]
        fanout.publish_stream(event(g.id, 1, "member.joined", user_id="new"), ("own",))
        assert fanout.cached(g.id) is None
        assert rig.deliveries[-1].recipients == ("own", "new")


async def test_stream_events_go_to_the_members_at_their_point_of_the_stream(rig: Rig) -> None:
    fanout = rig.fanout
    fanout.remember("c_1", ["a", "b"])
    rig.clear()
    renamed = event("c_1", 1, "conversation.renamed", title="t", by="a")
    fanout.publish_stream(renamed, ("ignored",))  # the cache wins over the fallback
    fanout.publish_stream(event("c_1", 2, "member.joined", user_id="c", role="member", by="a"))
    fanout.publish_stream(event("c_1", 3, "member.left", user_id="a", by=None, reason="left"))
    fanout.publish_stream(event("c_1", 4, "member.role_changed", user_id="b", role="owner"))
    assert [(d.conversation_id, d.seq, d.recipients) for d in rig.deliveries] == [
        ("c_1", 1, ("a", "b")),
        ("c_1", 2, ("a", "b", "c")),
        ("c_1", 3, ("a", "b", "c")),
        ("c_1", 4, ("b", "c")),
    ]
    assert rig.deliveries[0].payload == events.stream(renamed)
    assert fanout.cached("c_1") == ("b", "c")


async def test_without_a_cached_list_the_fallback_decides(rig: Rig) -> None:
    fanout = rig.fanout
    rig.clear()
    fanout.publish_stream(event("c_2", 5, "conversation.renamed", title="t"), ("a", "b"))
    assert fanout.cached("c_2") is None  # a fallback is not remembered by itself
    fanout.publish_stream(event("c_3", 1, "member.left", user_id="a"), ("a", "b"))
    assert fanout.cached("c_3") == ("b",)
    fanout.publish_stream(event("c_4", 1, "member.joined", user_id="n"), ("a",))
    assert fanout.cached("c_4") == ("a", "n")
    fanout.publish_stream(event("c_5", 1, "message.deleted"))  # nobody known: empty recipients
    assert [(d.conversation_id, d.recipients) for d in rig.deliveries] == [
        ("c_2", ("a", "b")),
        ("c_3", ("a", "b")),
        ("c_4", ("a", "n")),
        ("c_5", ()),
    ]


async def test_events_outside_the_stream_have_seq_zero_and_need_recipients(rig: Rig) -> None:
    rig.clear()
    rig.fanout.publish_to([], b'{"type":"x"}', "c_1")
    rig.fanout.publish_to(iter(()), b'{"type":"x"}')
    assert rig.deliveries == []
    rig.fanout.publish_to(iter(["a", "b"]), b'{"type":"presence"}')
    rig.fanout.publish_to(("c",), b'{"type":"receipt"}', "c_1")
    assert rig.deliveries == [
        Delivery("", 0, ("a", "b"), b'{"type":"presence"}'),
        Delivery("c_1", 0, ("c",), b'{"type":"receipt"}'),
    ]


class SlowReads:
    """A store whose reads take their snapshot at once and answer when let go."""

    def __init__(self) -> None:
        self.members: list[str] = ["a"]
        self.blockers: list[str] = []
        self.gate = asyncio.Event()

    async def member_ids(self, conversation_id: str) -> list[str]:
        snapshot = list(self.members)
        await self.gate.wait()
        return snapshot

    async def blockers_of(self, user: str) -> list[str]:
        snapshot = list(self.blockers)
        await self.gate.wait()
        return snapshot


async def test_a_read_older_than_a_change_does_not_overwrite_the_caches(rig: Rig) -> None:
    """Reads run beside writes: one that began before a join or a block answers after it."""
    slow = SlowReads()
    fanout = Fanout(cast(Store, slow), rig.broker)
    reading = asyncio.ensure_future(fanout.members("c1"))
    blocking = asyncio.ensure_future(fanout.blockers("ann"))
    await asyncio.sleep(0)
    slow.members.append("b")
    fanout.remember("c1", ["a", "b"])  # b joined, through this process
    slow.blockers.append("bob")
    fanout.forget_blockers("ann")  # bob blocked ann
    slow.gate.set()
    assert await reading == ("a", "b")
    assert fanout.cached("c1") == ("a", "b")
    assert await blocking == frozenset()  # read before the block: answered, not kept
    assert await fanout.blockers("ann") == frozenset({"bob"})
