"""What a process watches when its users connect (routing by interest)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from hubbub.broker.base import Delivery
from hubbub.broker.memory import MemoryBroker
from hubbub.gateway.interest import LOAD_BATCH, Interest
from hubbub.gateway.sequencer import Sequencer
from hubbub.models import Replay


class Rig:
    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.reads: list[list[str]] = []
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
