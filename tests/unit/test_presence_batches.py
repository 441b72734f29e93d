"""Presence goes out at once when quiet and in batches during a burst."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.broker.base import Delivery
from hubbub.broker.memory import MemoryBroker
from hubbub.service import presence_batches as presence
from hubbub.service.fanout import Fanout
from hubbub.service.presence_batches import Batches
from hubbub.store.sqlite import SQLiteStore

WINDOW = 0.05


class Heard:
    """What the broker delivered, grouped by the event-loop pass that delivered it."""

    def __init__(self) -> None:
        self.passes: list[list[bytes]] = []
        self._open = False  # a delivery was heard in the current pass
        self.refuse: set[bytes] = set()

    def __call__(self, delivery: Delivery) -> None:
        if delivery.payload in self.refuse:
            raise RuntimeError("refused")
        if not self._open:
            self._open = True
            self.passes.append([])
            asyncio.get_running_loop().call_soon(self._close)
        self.passes[-1].append(delivery.payload)

    def _close(self) -> None:
        self._open = False

    @property
    def payloads(self) -> list[bytes]:
        return [p for group in self.passes for p in group]


@pytest.fixture
async def heard(tmp_path: Path) -> AsyncIterator[tuple[Batches, Heard]]:
    broker = MemoryBroker()
    await broker.start()
    listener = Heard()
    broker.subscribe(listener)
    # Publishing reads nothing: the store is there because a Fanout has one.
    batches = Batches(Fanout(SQLiteStore(tmp_path / "unused.db"), broker), WINDOW)
    yield batches, listener
    batches.flush(close=True)
    await broker.stop()


async def passes(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


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
    await passes(3)
    assert listener.payloads == [b"1"]  # the rest waits for the window
    await asyncio.sleep(WINDOW * 3)
    assert listener.passes == [[b"1"], [b"2", b"3", b"4", b"5"]]


async def test_a_large_batch_is_spread_over_passes_in_order(
    heard: tuple[Batches, Heard], monkeypatch: pytest.MonkeyPatch
) -> None:
    batches, listener = heard
    monkeypatch.setattr(presence, "BATCH_FRAMES", 6)
    recipients = ("a", "b", "c")  # two announcements fill a pass
    for n in range(7):
        batches.publish(recipients, b"%d" % n)
    await asyncio.sleep(WINDOW * 3)
    assert listener.passes == [[b"0"], [b"1", b"2"], [b"3", b"4"], [b"5", b"6"]]


async def test_a_failing_publication_loses_only_itself(
    heard: tuple[Batches, Heard], caplog: pytest.LogCaptureFixture
) -> None:
    batches, listener = heard
    listener.refuse = {b"1", b"3"}
    with caplog.at_level(logging.ERROR, "hubbub.presence"):
        for n in range(5):
            batches.publish(("bob",), b"%d" % n)
        await asyncio.sleep(WINDOW * 3)
        batches.publish(("bob",), b"5")
        await asyncio.sleep(WINDOW * 3)
    assert listener.payloads == [b"0", b"2", b"4", b"5"]
    assert [r.message for r in caplog.records] == ["publishing presence failed"] * 2


async def test_flush_publishes_what_waits_now(heard: tuple[Batches, Heard]) -> None:
    batches, listener = heard
    for n in range(3):
        batches.publish(("bob",), b"%d" % n)
    batches.flush()
    assert listener.payloads == [b"0", b"1", b"2"]
    batches.publish(("bob",), b"3")  # quiet again: at once
    batches.publish(("bob",), b"4")  # and the next one waits
    assert listener.payloads == [b"0", b"1", b"2", b"3"]
    batches.flush(close=True)
    assert listener.payloads == [b"0", b"1", b"2", b"3", b"4"]
    for n in range(5, 8):  # closed: everything at once, no timer left behind
        batches.publish(("bob",), b"%d" % n)
    assert listener.payloads == [b"%d" % n for n in range(8)]
