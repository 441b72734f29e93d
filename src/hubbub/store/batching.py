"""Group commit for PostgreSQL sends: calls that queue up meanwhile are stored together.

A send arriving while fewer than ``batches`` transactions are storing sends
starts one at once (a lone send waits for nothing). Otherwise it queues, and
the next batch to start takes everything queued, up to ``max_items`` items,
into one transaction (``sends.append_calls``); each caller is answered after
that transaction commits, with its own items' results. Several batches are in
flight at once, one per connection, so one commits while the next is stored.

A batch that fails for the database's sake (``Unavailable``: down, timed out,
busy) fails all its callers: none of them was committed, each may retry. One
that fails otherwise was rolled back because of something in one of its sends
(data the database refuses): its items are then stored again one per
transaction, so only the failing one is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from hubbub.errors import HubbubError, Unavailable
from hubbub.models import SendItem
from hubbub.store.base import Appended
from hubbub.store.sends import Call

log = logging.getLogger("hubbub.store")

MAX_ITEMS = 512
"""Items one batch takes at most (a caller's own items are never split)."""
BATCHES = 3
"""Batches storing at once, each on a connection of the writers' pool."""

Run = Callable[[list[Call]], Awaitable[list[list[Appended]]]]


class Refused(HubbubError):
    """A send the database would not store (code ``internal``; logged)."""


class SendBatcher:
    def __init__(self, run: Run, max_items: int = MAX_ITEMS, batches: int = BATCHES) -> None:
        self._run = run
        self.max_items = max_items
        self.batches = batches
        self._queue: deque[tuple[Call, asyncio.Future[list[Appended]]]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def append(
        self, sender: str, items: list[SendItem], now_ms: int, as_server: bool
    ) -> list[Appended]:
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        self._queue.append((Call(sender, items, now_ms, as_server), future))
        self._start()
        return await future

    def _start(self) -> None:
        while self._queue and self._running < self.batches:
            batch = [self._queue.popleft()]
            size = len(batch[0][0].items)
            while self._queue and size + len(self._queue[0][0].items) <= self.max_items:
                call = self._queue.popleft()
                size += len(call[0].items)
                batch.append(call)
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._store(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _store(self, batch: list[tuple[Call, asyncio.Future[list[Appended]]]]) -> None:
        try:
            # Callers that gave up before their batch started need nothing stored.
            batch = [(call, future) for call, future in batch if not future.done()]
            if batch:
                await self._answer(batch)
        finally:
            # Cancelled (the process is stopping): nobody is left waiting forever.
            for _, future in batch:
                _settle(future, exc=Unavailable("the database is closing; retry"))
            self._running -= 1
            self._start()

    async def _answer(self, batch: list[tuple[Call, asyncio.Future[list[Appended]]]]) -> None:
        try:
            results = await self._run([call for call, _ in batch])
        except Unavailable as exc:
            for _, future in batch:
                _settle(future, exc=exc)
            return
        except Exception as exc:
            if sum(len(call.items) for call, _ in batch) == 1:
                log.exception("a send could not be stored")
                _settle(batch[0][1], [_refused(exc)])
                return
            log.warning("a batch of sends was refused (%s); storing them one by one", exc)
            for call, future in batch:
                _settle(future, await self._one_by_one(call))
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)

    async def _one_by_one(self, call: Call) -> list[Appended]:
        """Each item of ``call`` alone, in order: a refused one refuses only itself."""
        out: list[Appended] = []
        for item in call.items:
            alone = Call(call.sender, [item], call.now_ms, call.as_server)
            try:
                ((result,),) = await self._run([alone])
            except HubbubError as exc:
                result = exc
            except Exception as exc:
                log.exception("a send could not be stored")
                result = _refused(exc)
            out.append(result)
        return out

    async def close(self) -> None:
        """Wait for the batches under way (their callers are answered)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _refused(exc: Exception) -> Refused:
    return Refused(f"this message could not be stored ({type(exc).__name__})")


def _settle(
    future: asyncio.Future[Any], result: object = None, exc: BaseException | None = None
) -> None:
    if future.done():  # the caller was cancelled: what committed stays committed
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
