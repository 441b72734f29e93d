"""What a process watches when its users connect (routing by interest)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from hubbub.broker.base import Delivery
from hubbub.broker.memory import MemoryBroker
from hubbub.gateway import interest as interest_module
from hubbub.gateway.interest import LOAD_BATCH, Interest
from hubbub.gateway.sequencer import Sequencer
from hubbub.models import Replay


class Rig:
    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.reads: list[list[str]] = []
        self.failures = 0  # reads to fail before they succeed
        self.release = asyncio.Event()
        self.tasks: list[asyncio.Future[Any]] = []
        self.interest = Interest(
            self.broker,
            Sequencer(self.deliver, self.fetch),
            self.conversations_of,
            self.replay,
            self.spawn,
        )

    def deliver(self, delivery: Delivery) -> None:
        pass

    async def fetch(self, cid: str, after: int, limit: int) -> list[Delivery]:
        return []

    async def replay(self, user: str, cursors: dict[str, int]) -> list[Replay]:
        return []

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    async def conversations_of(self, users: list[str]) -> dict[str, list[str]]:
        self.reads.append(users)
        await self.release.wait()  # the database takes its time
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database went away")
        return {u: [f"c-{u}"] for u in users}

    async def settle(self) -> None:
        self.release.set()
        while not all(t.done() for t in self.tasks):
            await asyncio.sleep(0.01)


async def test_users_connecting_during_a_read_are_read_together_in_batches() -> None:
    rig = Rig()
    rig.interest.opened("first")
    await asyncio.sleep(0.01)
    assert rig.reads == [["first"]]  # the first one is read at once
    later = [f"u{i:04d}" for i in range(LOAD_BATCH * 2 + 100)]
    for user in later:
        rig.interest.opened(user)
    rig.interest.opened("gone")
    rig.interest.closed("gone")  # left before its turn: not read at all
    await rig.settle()
    assert [len(r) for r in rig.reads] == [1, LOAD_BATCH, LOAD_BATCH, 100]
    assert [u for r in rig.reads[1:] for u in r] == later
    assert len(rig.tasks) == 1  # one reader for them all, not a task each
    for user in ["first", *later]:
        assert rig.broker.watching(f"c-{user}")
        assert rig.interest.conversations(user) == {f"c-{user}"}
    assert not rig.broker.watching("c-gone")


async def test_a_user_who_leaves_while_being_read_watches_nothing() -> None:
    rig = Rig()
    rig.interest.opened("brief")
    await asyncio.sleep(0.01)
    rig.interest.closed("brief")  # while the read is under way
    await rig.settle()
    assert rig.reads == [["brief"]]
    assert not rig.broker.watching("c-brief")
    assert rig.interest.conversations("brief") == frozenset()


async def test_a_user_is_ready_once_their_conversations_are_watched() -> None:
    rig = Rig()
    rig.interest.opened("u")
    rig.interest.opened("u")  # a second session waits for the same read
    ready = rig.interest.ready("u")
    assert ready is not None
    await asyncio.sleep(0.01)
    assert not ready.done() and not rig.broker.watching("c-u")
    await rig.settle()
    assert ready.done() and not ready.cancelled()
    assert rig.broker.watching("c-u")
    assert rig.interest.ready("u") is None  # a later session is ready at once


async def test_a_failed_read_is_tried_again_and_the_user_waits_for_it(monkeypatch: Any) -> None:
    monkeypatch.setattr(interest_module, "RETRY_PAUSE", 0.01)
    rig = Rig()
    rig.failures = 2
    rig.interest.opened("u")
    ready = rig.interest.ready("u")
    assert ready is not None
    await rig.settle()
    assert rig.reads == [["u"], ["u"], ["u"]]
    assert ready.done() and rig.broker.watching("c-u")


async def test_a_user_who_leaves_before_being_ready_is_not_waited_for() -> None:
    rig = Rig()
    rig.interest.opened("u")
    ready = rig.interest.ready("u")
    assert ready is not None
    await asyncio.sleep(0.01)  # the read is under way
    rig.interest.closed("u")
    assert ready.cancelled() and rig.interest.ready("u") is None
    rig.interest.opened("u")  # back before the first read ended: read again
    again = rig.interest.ready("u")
    assert again is not None and again is not ready
    await rig.settle()
    assert again.done() and rig.reads == [["u"], ["u"]]
