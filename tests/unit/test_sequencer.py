"""Live delivery order per conversation, whatever order events arrive in."""

from __future__ import annotations

import asyncio

from hubbub.broker.base import Delivery
from hubbub.gateway.sequencer import Sequencer

STORE = {s: Delivery("c", s, ("u",), b"%d" % s) for s in range(1, 50)}


class Harness:
    def __init__(self) -> None:
        self.out: list[int] = []
        self.fetches: list[tuple[int, int]] = []
        self.seq = Sequencer(self.deliver, self.fetch, wait=0.02)
        self.names: list[str] = []

    def deliver(self, delivery: Delivery) -> None:
        self.out.append(delivery.seq)
        self.names.append(delivery.payload.decode())

    async def fetch(self, cid: str, after: int, limit: int) -> list[Delivery]:
        self.fetches.append((after, limit))
        return [STORE[s] for s in range(after + 1, min(after + 1 + limit, 50))]

    def feed(self, *seqs: int) -> None:
        for s in seqs:
            self.seq(STORE[s])


async def test_in_order_passes_straight_through() -> None:
    h = Harness()
    h.feed(1, 2, 3)
    assert h.out == [1, 2, 3] and h.fetches == []


async def test_out_of_order_is_reordered_without_the_database() -> None:
    h = Harness()
    h.feed(1, 3, 4, 2)
    assert h.out == [1, 2, 3, 4]
    await asyncio.sleep(0.05)
    assert h.fetches == []


async def test_a_gap_is_filled_from_the_database_once() -> None:
    h = Harness()
    h.feed(1, 2, 5, 9)
    assert h.out == [1, 2]
    await asyncio.sleep(0.1)
    assert h.out == list(range(1, 10)) and h.fetches == [(2, 7)]
    h.feed(5, 9, 10)  # late duplicates are dropped
    assert h.out == list(range(1, 11))


async def test_events_outside_streams_and_before_tracking() -> None:
    h = Harness()
    h.seq(Delivery("c", 0, ("u",), b"typing"))
    h.feed(7, 8, 6)  # first seen at 7: 6 was never delivered here, so it goes late
    assert h.out == [0, 7, 8, 6]


async def test_catch_up_delivers_what_the_broker_lost() -> None:
    h = Harness()
    h.feed(1, 2)
    await h.seq.catch_up()
    assert h.out == list(range(1, 50))


async def test_events_arriving_during_a_fill_are_not_skipped() -> None:
    h = Harness()
    gate = asyncio.Event()
    plain_fetch = h.fetch

    async def slow_fetch(cid: str, after: int, limit: int) -> list[Delivery]:
        await gate.wait()
        return await plain_fetch(cid, after, limit)

    h.seq._fetch = slow_fetch
    h.feed(1, 3)  # 2 missing: a fill for 2..3 starts after the wait
    await asyncio.sleep(0.05)
    h.feed(6)  # arrives while that fill waits on the database: 4 and 5 missing too
    gate.set()
    await asyncio.sleep(0.2)
    assert h.out == [1, 2, 3, 4, 5, 6]


async def test_a_conversation_update_waits_behind_that_conversation_s_gap() -> None:
    h = Harness()
    h.feed(1, 3)  # 2 is late
    h.seq(Delivery("c", 0, ("u",), b"updated"))  # published after 3
    h.seq(Delivery("", 0, ("u",), b"presence"))  # no conversation: at once
    h.seq(Delivery("other", 0, ("u",), b"other"))  # nothing pending there
    assert h.names == ["1", "presence", "other"]
    h.feed(2)
    assert h.names == ["1", "presence", "other", "2", "3", "updated"]


async def test_a_conversation_update_follows_a_gap_the_database_fills() -> None:
    h = Harness()
    h.feed(1, 4)
    h.seq(Delivery("c", 0, ("u",), b"updated"))
    await asyncio.sleep(0.1)  # 2 and 3 come from the database
    assert h.names == ["1", "2", "3", "4", "updated"]
