"""Fire-and-forget tasks that are kept alive and whose failures are logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from hubbub.errors import HubbubError

log = logging.getLogger("hubbub")


class TaskSet:
    def __init__(self, what: str) -> None:
        self.what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, HubbubError):  # a refusal (the database is away): one line
            log.warning("%s failed: %s", self.what, exc.message)
        elif exc is not None:
            log.error("%s failed", self.what, exc_info=exc)

    async def drain(self) -> None:
        """Wait until every task (and any it started) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
