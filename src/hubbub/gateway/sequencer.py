"""Live delivery in seq order, once, whatever order the broker brings events in.

With several processes, two events of one conversation can reach a process in
the wrong order (each process publishes right after its own commit), and a
broker outage can lose some. The sequencer remembers the last seq it passed
on per conversation: the next one goes straight through; a later one waits
(``wait`` seconds at most) for the ones before it, which are then read from
the database if the broker did not bring them; an earlier one is a duplicate.

A conversation seen for the first time starts where it is seen; a lower seq
arriving after that was never delivered here and is passed on late rather
than dropped (clients detect such gaps by seq and fill them with ``resume``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from hubbub.broker.base import Delivery
from hubbub.metrics import DETACHED, Metrics
from hubbub.tasks import TaskSet, log_failure

log = logging.getLogger("hubbub.gateway")

Fetch = Callable[[str, int, int], Awaitable[list[Delivery]]]
WAIT = 0.25
CAPACITY = 50_000
FETCH_LIMIT = 1000


class Sequencer:
    def __init__(
        self,
        deliver: Callable[[Delivery], None],
        fetch: Fetch,
        wait: float = WAIT,
        capacity: int = CAPACITY,
        metrics: Metrics = DETACHED,
    ) -> None:
        self._gap_fills = metrics.gap_fills
        self._gaps_unfilled = metrics.gaps_unfilled
        self._deliver = deliver
        self._fetch = fetch
        self._wait = wait
        self._capacity = capacity
        self._last: OrderedDict[str, int] = OrderedDict()
        self._floor: dict[str, int] = {}
        self._pending: dict[str, dict[int, Delivery]] = {}
        # Events outside the stream that name a conversation (receipts,
        # conversation.created/updated) published while some of its stream
        # events wait for a gap: (the seq they follow, the event).
        self._behind: dict[str, list[tuple[int, Delivery]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks = TaskSet("gap fill")

    def __call__(self, delivery: Delivery) -> None:
        seq = delivery.seq
        cid = delivery.conversation_id
        if not seq:  # outside any stream: receipts, typing, presence, list updates
            pending = self._pending.get(cid) if cid else None
            if pending:
                self._behind.setdefault(cid, []).append((max(pending), delivery))
            else:
                self._deliver(delivery)
            return
        last = self._last.get(cid)
        if last is None or seq == last + 1:
            if last is None:
                self._floor[cid] = seq
            self._emit(delivery)
            self._drain(cid)
        elif seq <= last:
            if seq < self._floor.get(cid, 0):
                self._deliver(delivery)  # from before this process started tracking
        else:
            self._pending.setdefault(cid, {})[seq] = delivery
            if cid not in self._timers:
                loop = asyncio.get_running_loop()
                self._timers[cid] = loop.call_later(self._wait, self._fill, cid)

    def _emit(self, delivery: Delivery) -> None:
        cid = delivery.conversation_id
        self._last[cid] = delivery.seq
        self._last.move_to_end(cid)
        if len(self._last) > self._capacity:
            old, _ = self._last.popitem(last=False)
            self._floor.pop(old, None)
        self._deliver(delivery)
        behind = self._behind.get(cid)
        if behind:
            while behind and behind[0][0] <= delivery.seq:
                self._deliver(behind.pop(0)[1])
            if not behind:
                del self._behind[cid]

    def _drain(self, cid: str) -> None:
        pending = self._pending.get(cid)
        while pending and self._last[cid] + 1 in pending:
            self._emit(pending.pop(self._last[cid] + 1))
        if not pending:
            self._pending.pop(cid, None)
            timer = self._timers.pop(cid, None)
            if timer is not None:
                timer.cancel()

    def _fill(self, cid: str) -> None:
        self._timers.pop(cid, None)
        self._tasks.spawn(self._fill_gap(cid))

    async def _fill_gap(self, cid: str) -> None:
        pending = self._pending.get(cid)
        if not pending:
            return
        last = self._last[cid]
        limit = min(max(pending) - last, FETCH_LIMIT)
        self._gap_fills.inc()
        try:
            missing = await self._fetch(cid, last, limit)
        except Exception as exc:
            log_failure(log, f"could not fetch events after {last} of {cid}", exc)
            missing = []
        for delivery in missing:
            if delivery.seq == self._last[cid] + 1:
                self._emit(delivery)
        pending = self._pending.get(cid, {})
        for seq in [s for s in pending if s <= self._last[cid]]:
            del pending[seq]  # delivered from the database already
        self._drain(cid)
        pending = self._pending.get(cid, {})
        if not pending:
            return
        if self._last[cid] + 1 > last + limit:
            # Events arrived during the fetch beyond what it asked for: their
            # gap has not been looked up yet. Look again (later), not skip it.
            if cid not in self._timers:
                loop = asyncio.get_running_loop()
                self._timers[cid] = loop.call_later(self._wait, self._fill, cid)
            return
        # The database was asked for the missing seq and did not have it: pass
        # the rest on in order; clients detect the gap by seq and fill it.
        self._gaps_unfilled.inc()
        log.warning("gap in %s after seq %s could not be filled", cid, self._last[cid])
        for seq in sorted(pending):
            self._emit(pending.pop(seq))
        self._drain(cid)

    async def catch_up(self) -> None:
        """Deliver what every tracked conversation committed since its last seq.

        Called when the broker comes back after an outage.
        """
        for cid in list(self._last):
            await self.catch_up_one(cid)

    def expect(self, cid: str, last: int) -> None:
        """Track ``cid`` from after ``last``, unless it is tracked already.

        For a conversation this process starts receiving at a known point (a
        new conversation: 0): its first live event then goes through, or
        waits for the ones before it as any gap does.
        """
        if cid not in self._last:
            self._last[cid] = last
            self._floor[cid] = last + 1

    def tracks(self, cid: str) -> bool:
        """Whether a seq of ``cid`` was passed on here (and is still remembered)."""
        return cid in self._last

    async def catch_up_one(self, cid: str) -> None:
        """Deliver what ``cid`` committed after its last seq passed on here.

        Called when this process starts receiving a conversation's events: what
        was committed before the subscription took effect came by no broker.
        Nothing happens for a conversation not tracked.
        """
        after = self._last.get(cid)
        if after is None:
            return
        try:
            missed = await self._fetch(cid, after, FETCH_LIMIT)
        except Exception as exc:
            log_failure(log, f"catch-up failed for {cid}", exc)
            return
        for delivery in missed:
            self(delivery)
