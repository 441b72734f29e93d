"""Presence goes out at once when quiet and in batches during a burst."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.broker.base import Delivery
from hubbub.broker.memory import MemoryBroker
from hubbub.service import presence
from hubbub.service.fanout import Fanout
from hubbub.service.presence import Batches
from hubbub.store.sqlite import SQLiteStore

WINDOW = 0.05


class Heard:
    """What the broker delivered, with the event-loop pass it was delivered in."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[int, bytes]] = []
        self.tick = 0
        self._ticking = True
        asyncio.get_running_loop().call_soon(self._count)

    def _count(self) -> None:
        self.tick += 1
        if self._ticking:
            asyncio.get_running_loop().call_soon(self._count)

    def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append((self.tick, delivery.payload))

    def stop(self) -> None:
        self._ticking = False

    @property
    def payloads(self) -> list[bytes]:
        return [payload for _, payload in self.deliveries]

    def passes(self) -> list[list[bytes]]:
        """Payloads grouped by the pass that delivered them."""
        grouped: dict[int, list[bytes]] = {}
        for tick, payload in self.deliveries:
            grouped.setdefault(tick, []).append(payload)
        return list(grouped.values())


@pytest.fixture
async def heard(tmp_path: Path) -> AsyncIterator[tuple[Batches, Heard]]:
    broker = MemoryBroker()
    await broker.start()
    listener = Heard()
    broker.subscribe(listener)
    # Publishing reads nothing: the store is there because a Fanout has one.
    batches = Batches(Fanout(SQLiteStore(tmp_path / "unused.db"), broker), WINDOW)
    yield batches, listener
    listener.stop()
    batches.flush()
    await broker.stop()


async def test_quiet_presence_goes_out_at_once(heard: tuple[Batches, Heard]) -> None:
    batches, listener = heard
    batches.publish(("bob",), b"1")
    assert listener.payloads == [b"1"]  # synchronously
    await asyncio.sleep(WINDOW * 3)  # the window passes with nothing waiting
    batches.publish(("bob",), b"2")
    assert listener.payloads == [b"1", b"2"]


async def test_a_burst_waits_for_the_window_and_leaves_in_one_pass(
    heard: tuple[Batches, Heard],
) -> None:
    batches, listener = heard
    for n in range(1, 6):
        batches.publish(("bob", "carol"), b"%d" % n)
    assert listener.payloads == [b"1"]
    await asyncio.sleep(WINDOW / 3)
    assert listener.payloads == [b"1"]  # still inside the window
    await asyncio.sleep(WINDOW * 2)
    assert listener.passes() == [[b"1"], [b"2", b"3", b"4", b"5"]]


async def test_a_large_batch_is_spread_over_passes_in_order(
    heard: tuple[Batches, Heard], monkeypatch: pytest.MonkeyPatch
) -> None:
    batches, listener = heard
    monkeypatch.setattr(presence, "BATCH_FRAMES", 4)
    recipients = ("a", "b", "c")  # two announcements reach the limit of a pass
    for n in range(7):
        batches.publish(recipients, b"%d" % n)
    await asyncio.sleep(WINDOW * 3)
    assert listener.payloads == [b"%d" % n for n in range(7)]
    assert listener.passes() == [[b"0"], [b"1", b"2"], [b"3", b"4"], [b"5", b"6"]]


async def test_flush_publishes_what_waits_now(heard: tuple[Batches, Heard]) -> None:
    batches, listener = heard
    for n in range(3):
        batches.publish(("bob",), b"%d" % n)
    batches.flush()
    assert listener.payloads == [b"0", b"1", b"2"]
    batches.publish(("bob",), b"3")  # quiet again: at once
    assert listener.payloads == [b"0", b"1", b"2", b"3"]
